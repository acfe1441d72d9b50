declare module 'snappyjs' {
  /** Raw Snappy block; returns the same kind of buffer it was given. */
  export function compress<T extends Uint8Array | ArrayBuffer>(data: T): T;
  export function uncompress<T extends Uint8Array | ArrayBuffer>(data: T, maxLength?: number): T;
  const snappy: { compress: typeof compress; uncompress: typeof uncompress };
  export default snappy;
}

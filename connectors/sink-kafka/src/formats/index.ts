import { avroCodec } from './avro.js';
import { cloudEventsCodec } from './cloudevents.js';
import type { MessageCodec, MessageFormat } from './codec.js';
import { jsonCodec } from './json.js';
import { protobufCodec } from './protobuf.js';

export const codecs: Record<MessageFormat, MessageCodec> = {
  json: jsonCodec,
  avro: avroCodec,
  protobuf: protobufCodec,
  cloudevents: cloudEventsCodec,
};

export function codecFor(format: MessageFormat): MessageCodec {
  return codecs[format];
}

export type { DecodedChange, DecodeOptions, EncodedMessage, MessageCodec, MessageFormat } from './codec.js';
export { MESSAGE_FORMATS } from './codec.js';
export { decodeAvroMessage, avroSchemaOf } from './avro.js';
export { decodeProtobufMessage, protobufDescriptorOf } from './protobuf.js';
export { decodeJsonMessage } from './json.js';
export { decodeCloudEventMessage } from './cloudevents.js';

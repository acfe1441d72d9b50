export * from './model.js';
export * from './errors.js';
export * from './contract/connector.js';
export type * from './contract/logger.js';
export type * from './state/store.js';

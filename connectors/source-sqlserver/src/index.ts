export { configSchema, secretProperties, type SqlServerSourceConfig } from './config.js';
export { boundaryPosition, comparePositions, formatPosition } from './position.js';

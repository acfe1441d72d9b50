import avro from 'avsc';
import { avroSchemaFor } from './src/formats/avro.js';
import { codecs } from './src/formats/index.js';
import { allTypesEvents } from './test/fixtures/all-types.js';
(BigInt.prototype as any).toJSON = function () { return this.toString() + 'n'; };
try { codecs.avro.encode(allTypesEvents[0]!); } catch (e) { console.log((e as any).cause.message.slice(0, 600)); }

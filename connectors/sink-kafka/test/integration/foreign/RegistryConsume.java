import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorSet;
import com.google.protobuf.Descriptors.Descriptor;
import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Descriptors.FileDescriptor;
import com.google.protobuf.DynamicMessage;
import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.avro.Conversions;
import org.apache.avro.Schema;
import org.apache.avro.data.TimeConversions;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * A consumer that is not ours: the Java Kafka client reads the topics (isolation level as
 * asked), and every key and value in the Confluent wire format is decoded the way
 * Confluent's deserializers do it: magic byte 0, the 4-byte schema id, the schema fetched
 * from the registry (GET /schemas/ids/{id}), then Apache Avro's Java library (with the
 * standard logical-type conversions) or protobuf-java (a DynamicMessage from the `.proto`
 * the registry holds, compiled by protoc; the message picked by the wire format's message
 * indexes). Prints, per record:
 *
 *   R <tab> topic <tab> partition <tab> offset <tab> value schema id <tab> key <tab> op <tab> lsn
 *   F <tab> offset <tab> field <tab> class <tab> number <tab> text <tab> value  (each field of after, else before)
 *
 * number is days for dates, microseconds for times and timestamps (Avro logical types or
 * the Protobuf integers), else empty. value is the decoded value in one normal form (see
 * norm) that a test can build from the source's values. Tombstones print op "TOMBSTONE".
 *
 * args: bootstrap registryUrl isolationLevel expectedCount timeoutMs protoc topic[,topic...]
 * env: NS_REGISTRY_BEARER_TOKEN, when set, is sent as `Authorization: Bearer …` on every
 * registry request (what Confluent's deserializers do with bearer.auth.token).
 */
public class RegistryConsume {
  static final HttpClient HTTP = HttpClient.newHttpClient();
  static final Map<Integer, Object> SCHEMAS = new HashMap<>();
  static String registry;
  static String protoc;
  static GenericData avroData = new GenericData();

  static String fetch(int id, String[] type) throws Exception {
    HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(registry + "/schemas/ids/" + id)).GET();
    String token = System.getenv("NS_REGISTRY_BEARER_TOKEN");
    if (token != null && !token.isEmpty()) request.header("Authorization", "Bearer " + token);
    HttpResponse<String> res = HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
    if (res.statusCode() != 200) throw new IllegalStateException("schema " + id + ": " + res.statusCode() + " " + res.body());
    // {"schema":"...","schemaType":"PROTOBUF",...}: the schema string is JSON-escaped.
    com.fasterxml.jackson.databind.JsonNode node = new com.fasterxml.jackson.databind.ObjectMapper().readTree(res.body());
    type[0] = node.has("schemaType") ? node.get("schemaType").asText() : "AVRO";
    return node.get("schema").asText();
  }

  static Object schema(int id) throws Exception {
    Object cached = SCHEMAS.get(id);
    if (cached != null) return cached;
    String[] type = new String[1];
    String text = fetch(id, type);
    Object parsed;
    if (type[0].equals("PROTOBUF")) {
      Path dir = Files.createTempDirectory("ns-proto-");
      Files.writeString(dir.resolve("s.proto"), text);
      Process p = new ProcessBuilder(protoc, "--proto_path=" + dir, "--descriptor_set_out=" + dir.resolve("s.pb"), "s.proto")
          .redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes());
      if (p.waitFor() != 0) throw new IllegalStateException("protoc refused schema " + id + ": " + out);
      FileDescriptorProto proto = FileDescriptorSet.parseFrom(Files.readAllBytes(dir.resolve("s.pb"))).getFile(0);
      parsed = FileDescriptor.buildFrom(proto, new FileDescriptor[0]);
    } else {
      parsed = new Schema.Parser().parse(text);
    }
    SCHEMAS.put(id, parsed);
    return parsed;
  }

  static int varint(ByteBuffer buf) {
    int result = 0, shift = 0;
    while (true) {
      int b = buf.get() & 0xff;
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) == 0) break;
      shift += 7;
    }
    return (result >>> 1) ^ -(result & 1);
  }

  /** Decode one wire-format value: a GenericRecord or a DynamicMessage. */
  static Object decode(byte[] bytes, int[] idOut) throws Exception {
    ByteBuffer buf = ByteBuffer.wrap(bytes);
    if (buf.get() != 0) throw new IllegalStateException("magic byte is not 0");
    int id = buf.getInt();
    idOut[0] = id;
    Object s = schema(id);
    if (s instanceof Schema avro) {
      GenericDatumReader<Object> reader = new GenericDatumReader<>(avro, avro, avroData);
      return reader.read(null, DecoderFactory.get().binaryDecoder(bytes, buf.position(), bytes.length - buf.position(), null));
    }
    FileDescriptor file = (FileDescriptor) s;
    int count = varint(buf);
    List<Integer> indexes = new ArrayList<>();
    if (count == 0) indexes.add(0);
    for (int i = 0; i < count; i++) indexes.add(varint(buf));
    Descriptor d = file.getMessageTypes().get(indexes.get(0));
    for (int i = 1; i < indexes.size(); i++) d = d.getNestedTypes().get(indexes.get(i));
    byte[] payload = Arrays.copyOfRange(bytes, buf.position(), bytes.length);
    return DynamicMessage.parseFrom(d, payload);
  }

  static String micros(Instant t) {
    return Long.toString(Math.addExact(Math.multiplyExact(t.getEpochSecond(), 1_000_000L), t.getNano() / 1000));
  }

  static String clean(Object v) {
    return v == null ? "" : v.toString().replace('\t', ' ').replace('\n', ' ');
  }

  static final com.fasterxml.jackson.databind.ObjectMapper JSON = new com.fasterxml.jackson.databind.ObjectMapper();

  /**
   * One decoded value in a normal form: null; integers in decimal; doubles as "d:" and the
   * 16 hex digits of their IEEE bits; strings JSON-quoted; bytes "b64:" and base64; Avro's
   * logical dates "days:" epoch days, times and timestamps "us:" microseconds; UUIDs quoted;
   * lists "[a,b]"; the array wrappers (Avro record Array_*, Protobuf Array_* and its _Item)
   * unwrapped to the list or the item they hold.
   */
  static String norm(Object v) throws Exception {
    if (v == null) return "null";
    if (v instanceof CharSequence || v instanceof java.util.UUID || v instanceof GenericData.EnumSymbol)
      return JSON.writeValueAsString(v.toString());
    if (v instanceof Integer || v instanceof Long || v instanceof Boolean) return v.toString();
    if (v instanceof Double d) return "d:" + String.format("%016x", Double.doubleToRawLongBits(d));
    if (v instanceof Float f) return "d:" + String.format("%016x", Double.doubleToRawLongBits(f.doubleValue()));
    if (v instanceof ByteBuffer b) {
      ByteBuffer copy = b.duplicate();
      byte[] bytes = new byte[copy.remaining()];
      copy.get(bytes);
      return "b64:" + java.util.Base64.getEncoder().encodeToString(bytes);
    }
    if (v instanceof com.google.protobuf.ByteString b) return "b64:" + java.util.Base64.getEncoder().encodeToString(b.toByteArray());
    if (v instanceof LocalDate d) return "days:" + d.toEpochDay();
    if (v instanceof LocalTime t) return "us:" + (t.toNanoOfDay() / 1000);
    if (v instanceof LocalDateTime t) return "us:" + micros(t.toInstant(ZoneOffset.UTC));
    if (v instanceof Instant t) return "us:" + micros(t);
    if (v instanceof com.google.protobuf.Descriptors.EnumValueDescriptor e) return JSON.writeValueAsString(e.getName());
    if (v instanceof List<?> list) {
      StringBuilder out = new StringBuilder("[");
      for (int i = 0; i < list.size(); i++) {
        if (i > 0) out.append(',');
        out.append(norm(list.get(i)));
      }
      return out.append(']').toString();
    }
    if (v instanceof GenericRecord r && r.getSchema().getName().startsWith("Array_")) return norm(r.get("items"));
    if (v instanceof DynamicMessage m) {
      String name = m.getDescriptorForType().getName();
      if (name.startsWith("Array_") && name.endsWith("_Item")) {
        for (FieldDescriptor f : m.getDescriptorForType().getFields()) if (m.hasField(f)) return norm(m.getField(f));
        return "null";
      }
      if (name.startsWith("Array_")) return norm(m.getField(m.getDescriptorForType().findFieldByName("items")));
    }
    return "?" + v.getClass().getName() + ":" + clean(v);
  }

  static void printFields(long offset, Object image) throws Exception {
    if (image instanceof GenericRecord row) {
      for (Schema.Field field : row.getSchema().getFields()) {
        Object value = row.get(field.name());
        String number = "";
        if (value instanceof LocalDate d) number = Long.toString(d.toEpochDay());
        else if (value instanceof LocalTime t) number = Long.toString(t.toNanoOfDay() / 1000);
        else if (value instanceof LocalDateTime t) number = micros(t.toInstant(ZoneOffset.UTC));
        else if (value instanceof Instant t) number = micros(t);
        String cls = value == null ? "null" : value.getClass().getSimpleName();
        System.out.println("F\t" + offset + "\t" + field.name() + "\t" + cls + "\t" + number + "\t" + clean(value) + "\t" + norm(value));
      }
    } else if (image instanceof DynamicMessage row) {
      for (FieldDescriptor field : row.getDescriptorForType().getFields()) {
        if (!row.hasField(field)) {
          System.out.println("F\t" + offset + "\t" + field.getName() + "\tnull\t\t\tnull");
          continue;
        }
        Object value = row.getField(field);
        String number = (value instanceof Long || value instanceof Integer) ? value.toString() : "";
        String text = value instanceof com.google.protobuf.ByteString b ? java.util.Base64.getEncoder().encodeToString(b.toByteArray()) : clean(value);
        System.out.println("F\t" + offset + "\t" + field.getName() + "\t" + value.getClass().getSimpleName() + "\t" + number + "\t" + text + "\t" + norm(value));
      }
    }
  }

  static Object get(Object message, String name) {
    if (message instanceof GenericRecord r) return r.get(name);
    DynamicMessage m = (DynamicMessage) message;
    FieldDescriptor f = m.getDescriptorForType().findFieldByName(name);
    return f == null || (!f.isRepeated() && f.getJavaType() == FieldDescriptor.JavaType.MESSAGE && !m.hasField(f)) ? null : m.getField(f);
  }

  static String keyText(Object key) throws Exception {
    if (key == null) return "";
    if (key instanceof GenericRecord r) return clean(r);
    return clean(com.google.protobuf.TextFormat.printer().emittingSingleLine(true).printToString((DynamicMessage) key));
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    registry = args[1];
    String isolation = args[2];
    int expected = Integer.parseInt(args[3]);
    long timeout = Long.parseLong(args[4]);
    protoc = args[5];
    List<String> topics = Arrays.asList(args[6].split(","));
    avroData.addLogicalTypeConversion(new TimeConversions.DateConversion());
    avroData.addLogicalTypeConversion(new TimeConversions.TimeMicrosConversion());
    avroData.addLogicalTypeConversion(new TimeConversions.TimestampMicrosConversion());
    avroData.addLogicalTypeConversion(new TimeConversions.LocalTimestampMicrosConversion());
    avroData.addLogicalTypeConversion(new Conversions.UUIDConversion());

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.GROUP_ID_CONFIG, "ns-registry-consume-" + System.nanoTime());
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
    int seen = 0;
    long deadline = System.currentTimeMillis() + timeout;
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      consumer.subscribe(topics);
      while (seen < expected && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<byte[], byte[]> rec : consumer.poll(Duration.ofMillis(500))) {
          seen++;
          int[] keyId = new int[1];
          Object key = rec.key() == null ? null : decode(rec.key(), keyId);
          if (rec.value() == null) {
            System.out.println("R\t" + rec.topic() + "\t" + rec.partition() + "\t" + rec.offset() + "\t\t" + keyText(key) + "\tTOMBSTONE\t");
            continue;
          }
          int[] valueId = new int[1];
          Object value = decode(rec.value(), valueId);
          Object op = get(value, "_ns_op");
          Object lsn = get(value, "_ns_lsn");
          System.out.println("R\t" + rec.topic() + "\t" + rec.partition() + "\t" + rec.offset() + "\t" + valueId[0] + "\t" + keyText(key) + "\t" + clean(op) + "\t" + clean(lsn));
          Object after = get(value, "after");
          printFields(rec.offset(), after != null ? after : get(value, "before"));
        }
      }
    }
    System.out.flush();
    if (seen < expected) {
      System.err.println("only " + seen + " of " + expected + " records within " + timeout + " ms");
      System.exit(3);
    }
  }
}

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.ZoneOffset;
import java.util.List;
import java.util.stream.Stream;
import org.apache.avro.Conversions;
import org.apache.avro.Schema;
import org.apache.avro.data.TimeConversions;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;

/**
 * Reads nanosync Avro record values (one file each) with Apache Avro's Java library and the
 * standard logical-type conversions, and prints every column of `after` (or `before`) as
 * `file<TAB>field<TAB>class<TAB>number<TAB>text`: number is days for LocalDate, microseconds
 * for LocalTime / LocalDateTime / Instant, empty otherwise.
 */
public class AvroRead {
  static String micros(Instant t) {
    return Long.toString(Math.addExact(Math.multiplyExact(t.getEpochSecond(), 1_000_000L), t.getNano() / 1000));
  }

  public static void main(String[] args) throws Exception {
    GenericData data = new GenericData();
    data.addLogicalTypeConversion(new TimeConversions.DateConversion());
    data.addLogicalTypeConversion(new TimeConversions.TimeMicrosConversion());
    data.addLogicalTypeConversion(new TimeConversions.TimestampMicrosConversion());
    data.addLogicalTypeConversion(new TimeConversions.LocalTimestampMicrosConversion());
    data.addLogicalTypeConversion(new Conversions.UUIDConversion());
    List<Path> files;
    try (Stream<Path> listing = Files.list(Path.of(args[0]))) {
      files = listing.sorted().toList();
    }
    for (Path file : files) {
      ByteBuffer buf = ByteBuffer.wrap(Files.readAllBytes(file));
      if (buf.get(0) != 'N' || buf.get(2) != 'A') throw new IllegalStateException(file + ": not a nanosync avro message");
      int length = buf.getInt(11);
      String schemaText = new String(buf.array(), 15, length, StandardCharsets.UTF_8);
      Schema schema = new Schema.Parser().parse(schemaText);
      int start = 15 + length;
      GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(schema, schema, data);
      GenericRecord envelope = reader.read(null, DecoderFactory.get().binaryDecoder(buf.array(), start, buf.array().length - start, null));
      Object image = envelope.get("after") != null ? envelope.get("after") : envelope.get("before");
      String name = file.getFileName().toString();
      System.out.println(name + "\t_ns_op\t\t\t" + envelope.get("_ns_op"));
      if (!(image instanceof GenericRecord row)) continue;
      for (Schema.Field field : row.getSchema().getFields()) {
        Object value = row.get(field.name());
        String number = "";
        if (value instanceof LocalDate d) number = Long.toString(d.toEpochDay());
        else if (value instanceof LocalTime t) number = Long.toString(t.toNanoOfDay() / 1000);
        else if (value instanceof LocalDateTime t) number = micros(t.toInstant(ZoneOffset.UTC));
        else if (value instanceof Instant t) number = micros(t);
        String cls = value == null ? "null" : value.getClass().getSimpleName();
        String text = value == null ? "" : value.toString().replace('\t', ' ').replace('\n', ' ');
        System.out.println(name + "\t" + field.name() + "\t" + cls + "\t" + number + "\t" + text);
      }
    }
  }
}

package weir.bench;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.Arrays;
import java.util.Properties;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The word count of weir's pipeline benchmark, in Kafka Streams: exactly-once (v2), commits every
 * 100 ms, counts in RocksDB stores with changelogs, one stream thread, as weir runs it.
 *
 * <p>Driven over stdin so that one JVM runs several rounds (the first warms it up):
 * {@code start MODE APPLICATION_ID INPUT OUTPUT} starts an application and answers
 * {@code started}; {@code stop} closes it and answers {@code stopped}. MODE is {@code processor}
 * (Processor API, one output per input, no cache: what weir does) or {@code dsl}
 * ({@code groupByKey().count()}, whose record cache folds some updates of a key into later ones
 * within a commit interval), or {@code sentences} (the word count over sentences:
 * {@code flatMapValues().groupBy().count()}, through the repartition topic
 * {@code <application id>-words-repartition}). The caller measures progress from the group's
 * committed offsets.
 */
public final class WordCount {
    private WordCount() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: WordCount BOOTSTRAP_SERVERS STATE_DIR (then commands on stdin)");
            System.exit(2);
        }
        String bootstrap = args[0];
        String stateDir = args[1];
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        KafkaStreams running = null;
        for (String line; (line = in.readLine()) != null; ) {
            String[] command = line.trim().split("\\s+");
            if (command[0].equals("start") && command.length == 5 && running == null) {
                Topology topology = switch (command[1]) {
                    case "dsl" -> dsl(command[3], command[4]);
                    case "sentences" -> sentences(command[3], command[4]);
                    default -> processor(command[3], command[4]);
                };
                running = new KafkaStreams(topology, config(bootstrap, command[2], stateDir));
                running.setUncaughtExceptionHandler(e -> {
                    e.printStackTrace();
                    return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
                });
                running.start();
                say("started");
            } else if (command[0].equals("stop") && running != null) {
                running.close(Duration.ofSeconds(30));
                running.cleanUp();
                running = null;
                say("stopped");
            } else {
                say("error: unknown or untimely command: " + line);
            }
        }
        if (running != null) {
            running.close(Duration.ofSeconds(30));
        }
    }

    private static void say(String what) {
        System.out.println(what);
        System.out.flush();
    }

    /** Each application's state under {@code stateDir}, which the caller removes. */
    private static Properties config(String bootstrap, String applicationId, String stateDir) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.STATE_DIR_CONFIG, Paths.get(stateDir, applicationId).toString());
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        return p;
    }

    /** Sentences split into words, regrouped by word through a repartition topic, and counted. */
    private static Topology sentences(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(sentence -> Arrays.asList(sentence.toLowerCase().split("\\s+")))
                .groupBy((key, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count(Materialized.as("counts"))
                .toStream()
                .mapValues(count -> Long.toString(count))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    /** One output per input: the word's new count, from a RocksDB store with a changelog. */
    private static Topology processor(String input, String output) {
        Topology t = new Topology();
        t.addSource("words", Serdes.String().deserializer(), Serdes.String().deserializer(), input);
        t.addProcessor("count", Count::new, "words");
        t.addStateStore(
                Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore("counts"), Serdes.String(), Serdes.Long()),
                "count");
        t.addSink("counts", output, Serdes.String().serializer(), Serdes.String().serializer(), "count");
        return t;
    }

    private static final class Count implements Processor<String, String, String, String> {
        private ProcessorContext<String, String> context;
        private KeyValueStore<String, Long> counts;

        @Override
        public void init(ProcessorContext<String, String> context) {
            this.context = context;
            this.counts = context.getStateStore("counts");
        }

        @Override
        public void process(Record<String, String> record) {
            String word = record.value().toLowerCase();
            Long old = counts.get(word);
            long n = old == null ? 1 : old + 1;
            counts.put(word, n);
            context.forward(record.withKey(word).withValue(Long.toString(n)));
        }
    }

    /** The DSL's count, with its default record cache. */
    private static Topology dsl(String input, String output) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .groupByKey()
                .count(Materialized.as("counts"))
                .toStream()
                .mapValues(n -> Long.toString(n))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return b.build();
    }
}

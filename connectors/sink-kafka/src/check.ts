import type { CheckResult, TableRef } from '@nanosync/core';
import { type Admin, ConfigResourceTypes } from '@platformatic/kafka';
import type { KafkaSinkConfig } from './config.js';
import { authError, classifyKafkaError, errorChain, rootMessage, tlsError } from './errors.js';
import { rawRequest } from './producer.js';
import { topicFor } from './routing.js';

/** The kafka CLI tools' way of naming the brokers, for the printed fixes. */
function bootstrap(config: KafkaSinkConfig): string {
  return config.brokers.join(',');
}

function principal(config: KafkaSinkConfig): string {
  return config.sasl ? `User:${config.sasl.username}` : 'User:ANONYMOUS';
}

function errorType(err: unknown): string | undefined {
  for (const e of errorChain(err)) if (typeof e.type === 'string') return e.type;
  return undefined;
}

/** The topics the sink writes the tables to; without tables (older hosts), the fixed `topic` only. */
export function topicsFor(tables: readonly TableRef[] | undefined, config: KafkaSinkConfig): string[] {
  if (config.topic !== undefined) return [config.topic];
  return [...new Set((tables ?? []).map((t) => topicFor(t, config)))];
}

/**
 * Everything `doctor` (and every start) asks Kafka, creating nothing: the brokers answer,
 * the credentials are accepted, each topic the pipeline writes to exists and is visible to
 * this principal — or, when missing, may be created (`CreateTopics` with `validateOnly`) —
 * and each topic accepts messages as large as the batches the sink sends
 * (`max_bytes_in_flight`). Whether a topic allows WRITE shows only at the first send:
 * Kafka has no dry run for it.
 */
export async function kafkaChecks(
  withAdmin: <T>(fn: (admin: Admin) => Promise<T>) => Promise<T>,
  config: KafkaSinkConfig,
  tables: readonly TableRef[] | undefined,
): Promise<CheckResult[]> {
  const brokers = bootstrap(config);
  const topics = topicsFor(tables, config);
  let results: CheckResult[] = [];
  try {
    await withAdmin(async (admin) => {
      const cluster = await admin.metadata({ topics: [] });
      results.push({
        name: 'kafka reachable',
        ok: true,
        message: `connected to ${brokers} (${cluster.brokers.size} broker(s))`,
      });
      results.push({
        name: 'kafka auth',
        ok: true,
        message: config.sasl
          ? `authenticated as "${config.sasl.username}" with SASL ${config.sasl.mechanism.toUpperCase()}${config.tls ? ' over TLS' : ''}`
          : `no SASL configured; the brokers accept this client unauthenticated${config.tls ? ' over TLS' : ''}`,
      });
      const visible = new Set(await admin.listTopics());
      const existing = topics.filter((t) => visible.has(t));
      const creatable: string[] = [];
      for (const topic of topics) {
        if (visible.has(topic)) {
          results.push({ name: `topic ${topic}`, ok: true, message: 'exists and is visible to this client' });
          continue;
        }
        const result = await missingTopic(admin, config, topic);
        if (result.ok) creatable.push(topic);
        results.push(result);
      }
      // exactly_once records each transaction's position as an offset of this topic: it must
      // exist (or be creatable) like the data topics; nothing is written to it, so its message
      // size does not matter.
      const checkpoint = config.delivery === 'exactly_once' ? config.checkpointTopic : undefined;
      if (checkpoint !== undefined && !topics.includes(checkpoint)) {
        const result = visible.has(checkpoint)
          ? { name: `topic ${checkpoint}`, ok: true, message: 'exists and is visible to this client' }
          : await missingTopic(admin, config, checkpoint);
        results.push({ ...result, name: `checkpoint_topic ${checkpoint}` });
      }
      results.push(...(await messageSizes(admin, config, existing, creatable, [...cluster.brokers.keys()][0])));
    });
  } catch (err) {
    const kind = classifyKafkaError(err);
    if (kind === 'auth' && results.length === 0) {
      results = [
        { name: 'kafka reachable', ok: true, message: `the brokers at ${brokers} answered` },
        {
          name: 'kafka auth',
          ok: false,
          severity: 'error',
          message: authError(err, config, 'the connection').message,
          fix: config.sasl
            ? `check sasl_username, sasl_password and sasl_mechanism (${config.sasl.mechanism}) against the user on the brokers, e.g.\nkafka-configs.sh --bootstrap-server ${brokers} --describe --entity-type users --entity-name ${config.sasl.username}`
            : 'the brokers want credentials: set sasl_mechanism, sasl_username and sasl_password',
        },
      ];
    } else if (results.length === 0) {
      results = [
        {
          name: 'kafka reachable',
          ok: false,
          severity: 'error',
          message:
            kind === 'tls'
              ? tlsError(err, config.brokers).message
              : `cannot reach Kafka at ${brokers}: ${rootMessage(err)}`,
          ...(kind === 'retriable' ? { fix: 'check brokers, the network path and tls_enabled' } : {}),
          retriable: kind === 'retriable',
        },
      ];
    } else {
      results.push({
        name: 'kafka checks',
        ok: false,
        severity: 'error',
        message: `Kafka stopped answering during the checks: ${rootMessage(err)}`,
        retriable: kind === 'retriable',
      });
    }
  }
  return results;
}

async function missingTopic(admin: Admin, config: KafkaSinkConfig, topic: string): Promise<CheckResult> {
  const brokers = bootstrap(config);
  const aclFix =
    `kafka-acls.sh --bootstrap-server ${brokers} --add --allow-principal ${principal(config)} ` +
    `--operation Describe --operation Write --topic ${topic}`;
  const createFix =
    `kafka-topics.sh --bootstrap-server ${brokers} --create --topic ${topic}` +
    `${config.numPartitions > 0 ? ` --partitions ${config.numPartitions}` : ''}` +
    `${config.replicationFactor > 0 ? ` --replication-factor ${config.replicationFactor}` : ''}`;
  try {
    // CreateTopics with validate_only, sent to the controller (the client's createTopics has no dry run).
    const cluster = await admin.metadata({ topics: [] });
    const controller = cluster.brokers.get(cluster.controllerId) ?? [...cluster.brokers.values()][0];
    if (!controller) throw new Error('the cluster named no broker');
    await rawRequest(
      admin,
      controller,
      'CreateTopics',
      [
        {
          name: topic,
          numPartitions: config.numPartitions > 0 ? config.numPartitions : -1,
          replicationFactor: config.replicationFactor > 0 ? config.replicationFactor : -1,
          assignments: [],
          configs: [],
        },
      ],
      config.requestTimeoutMs,
      true,
    );
  } catch (err) {
    const type = errorType(err);
    if (type === 'TOPIC_ALREADY_EXISTS')
      return {
        name: `topic ${topic}`,
        ok: false,
        severity: 'error',
        message: `exists, but ${principal(config)} may not see it (no DESCRIBE permission)`,
        fix: aclFix,
      };
    if (type === 'TOPIC_AUTHORIZATION_FAILED' || type === 'CLUSTER_AUTHORIZATION_FAILED')
      return {
        name: `topic ${topic}`,
        ok: false,
        severity: 'error',
        message: `is not visible to ${principal(config)} (missing, or no DESCRIBE permission), and it may not create topics`,
        fix: `${createFix}\n${aclFix}`,
      };
    return {
      name: `topic ${topic}`,
      ok: false,
      severity: 'error',
      message: `does not exist, and a dry run of creating it failed: ${rootMessage(err)}`,
      fix: createFix,
    };
  }
  return config.autoCreateTopics
    ? { name: `topic ${topic}`, ok: true, message: 'does not exist yet; the sink creates it (creating it is allowed)' }
    : {
        name: `topic ${topic}`,
        ok: false,
        severity: 'error',
        message: 'does not exist and auto_create_topics is off',
        fix: `${createFix}\n(or set auto_create_topics: true)`,
      };
}

/** `max.message.bytes` of each topic (the broker's `message.max.bytes` for those still to create) against the sink's batches. */
async function messageSizes(
  admin: Admin,
  config: KafkaSinkConfig,
  existing: string[],
  toCreate: string[],
  brokerId: number | undefined,
): Promise<CheckResult[]> {
  const limits = new Map<string, number>();
  const results: CheckResult[] = [];
  const unreadable = (what: string, err: unknown, resource: string): CheckResult => ({
    name: 'max.message.bytes',
    ok: false,
    severity: 'warning',
    message: `cannot read ${what} (${rootMessage(err)}); a message larger than the limit is refused at send time`,
    fix: `kafka-acls.sh --bootstrap-server ${bootstrap(config)} --add --allow-principal ${principal(config)} --operation DescribeConfigs ${resource}`,
  });
  if (existing.length > 0) {
    try {
      const described = await admin.describeConfigs({
        includeSynonyms: false,
        resources: existing.map((name) => ({
          resourceType: ConfigResourceTypes.TOPIC,
          resourceName: name,
          configurationKeys: ['max.message.bytes'],
        })),
      });
      for (const r of described) {
        const value = r.configs.find((e) => e.name === 'max.message.bytes')?.value;
        if (value !== undefined && value !== null) limits.set(r.resourceName, Number(value));
      }
    } catch (err) {
      results.push(unreadable(`the message size limit of ${existing.join(', ')}`, err, `--topic ${existing[0]}`));
    }
  }
  if (toCreate.length > 0 && brokerId !== undefined) {
    try {
      const described = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [
          {
            resourceType: ConfigResourceTypes.BROKER,
            resourceName: String(brokerId),
            configurationKeys: ['message.max.bytes'],
          },
        ],
      });
      const value = described[0]?.configs.find((e) => e.name === 'message.max.bytes')?.value;
      if (value !== undefined && value !== null) for (const t of toCreate) limits.set(t, Number(value));
    } catch (err) {
      results.push(unreadable("the brokers' message.max.bytes (for the topics to create)", err, '--cluster'));
    }
  }
  const batch = config.maxBytesInFlight;
  for (const [topic, limit] of limits) {
    if (!Number.isFinite(limit)) continue;
    if (limit >= batch) {
      results.push({
        name: `max.message.bytes ${topic}`,
        ok: true,
        message: `accepts messages up to ${limit} bytes, at least the sink's largest batch (max_bytes_in_flight ${batch})`,
      });
    } else {
      results.push({
        name: `max.message.bytes ${topic}`,
        ok: false,
        severity: 'warning',
        message:
          `accepts messages up to ${limit} bytes, less than the sink's batches (max_bytes_in_flight ${batch}): ` +
          `larger batches are split and a single row over ${limit} bytes is refused`,
        fix: `kafka-configs.sh --bootstrap-server ${bootstrap(config)} --alter --entity-type topics --entity-name ${topic} --add-config max.message.bytes=${batch}\n(or lower max_bytes_in_flight to ${limit})`,
      });
    }
  }
  return results;
}

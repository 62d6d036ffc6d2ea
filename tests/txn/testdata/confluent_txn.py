"""Transactions through librdkafka (Debian's python3-confluent-kafka), for tests/txn.

Run by /usr/bin/python3 with no arguments. The topics come from the
environment, created and filled by the Go test:

  TXN_BOOTSTRAP  the broker
  TXN_IN         input topic, 2 partitions, 10 records in-0..in-9
  TXN_OUT        output topic, 3 partitions, empty
  TXN_FENCE      topic for the fencing check, 1 partition, empty
  TXN_GROUP      the consumer group whose offsets of TXN_IN are committed
  TXN_ID         transactional.id of the main producer
  TXN_FENCE_ID   transactional.id shared by the two fencing producers

What it does, in order:

  1. commit a transaction of 10 records c1-0..c1-9 to TXN_OUT;
  2. consume TXN_IN's 10 records in TXN_GROUP (read_committed, no auto
     commit), then abort a transaction of a-<input> records that also sent
     the consumer's positions with send_offsets_to_transaction;
  3. commit the same with c2-<input> records; the group's committed()
     offsets are read before step 2, after it and after step 3;
  4. read TXN_OUT from the start at read_committed and at read_uncommitted
     until end of partition;
  5. fencing: producer A (TXN_FENCE_ID) begins a transaction, produces
     "zombie" and flushes it; producer B with the same ID runs
     init_transactions, which fences A; A's commit_transaction must raise.
     B then commits "winner".

It prints one JSON object on stdout (see the Go test for the fields) and
exits 0, or 1 after an unexpected exception (in the "exception" field).
"""

import json
import os
import sys
import time
import traceback

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

env = os.environ
BOOT = env["TXN_BOOTSTRAP"]
result = {"delivery_errors": [], "client_errors": []}


def on_error(err):
    # librdkafka reports transient errors (a dropped connection) here and
    # recovers by itself; the test looks only at the fatal ones.
    result["client_errors"].append({"name": err.name(), "fatal": err.fatal(), "str": err.str()})


def on_delivery(err, msg):
    if err is not None:
        result["delivery_errors"].append("%s: %s" % (msg.value().decode(), err.str()))


def producer(txn_id):
    return Producer({
        "bootstrap.servers": BOOT,
        "client.id": "chronik-txn-confluent-python",
        "transactional.id": txn_id,
        "error_cb": on_error,
        "log_level": 4,
    })


def offsets(tps):
    return {str(tp.partition): tp.offset for tp in tps}


def produce_txn(p, prefix, values, consumer=None, commit=True):
    p.begin_transaction()
    for i, v in enumerate(values):
        p.produce(env["TXN_OUT"], key=str(i), value="%s-%s" % (prefix, v), partition=i % 3, on_delivery=on_delivery)
    if consumer is not None:
        p.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
    if commit:
        p.commit_transaction(30)
        return
    # abort_transaction purges what is still queued: deliver the records
    # first, so the log holds the aborted records for the readers to hide.
    left = p.flush(30)
    if left:
        raise RuntimeError("%d records of the transaction to abort not delivered within 30 s" % left)
    p.abort_transaction(30)


def consume_input():
    c = Consumer({
        "bootstrap.servers": BOOT,
        "group.id": env["TXN_GROUP"],
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "error_cb": on_error,
        "log_level": 4,
    })
    c.subscribe([env["TXN_IN"]])
    got = []
    deadline = time.time() + 60
    while len(got) < 10 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            result["client_errors"].append({"name": m.error().name(), "fatal": m.error().fatal(), "str": m.error().str()})
            continue
        got.append(m.value().decode())
    return c, got


def read_all(topic, partitions, level):
    c = Consumer({
        "bootstrap.servers": BOOT,
        "group.id": "txn-read-" + level,
        "isolation.level": level,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "error_cb": on_error,
        "log_level": 4,
    })
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got, eof = [], set()
    deadline = time.time() + 60
    while len(eof) < partitions and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
            else:
                result["client_errors"].append({"name": m.error().name(), "fatal": m.error().fatal(), "str": m.error().str()})
            continue
        got.append(m.value().decode())
    c.close()
    if len(eof) < partitions:
        raise RuntimeError("%s %s: end of partition reached on %s of %d partitions within 60 s" % (topic, level, sorted(eof), partitions))
    return sorted(got)


def fencing():
    a = producer(env["TXN_FENCE_ID"])
    a.init_transactions(30)
    a.begin_transaction()
    a.produce(env["TXN_FENCE"], value="zombie", on_delivery=on_delivery)
    left = a.flush(30)
    out = {"zombie_unflushed": left}
    b = producer(env["TXN_FENCE_ID"])
    b.init_transactions(60)
    try:
        a.commit_transaction(30)
        out["zombie_commit"] = "succeeded"
    except KafkaException as e:
        err = e.args[0]
        out["zombie_commit"] = "raised"
        out["error"] = {
            "name": err.name(),
            "code": err.code(),
            "fatal": err.fatal(),
            "retriable": err.retriable(),
            "txn_requires_abort": err.txn_requires_abort(),
            "str": err.str(),
        }
    b.begin_transaction()
    b.produce(env["TXN_FENCE"], value="winner", on_delivery=on_delivery)
    b.commit_transaction(30)
    out["winner_committed"] = True
    return out


def main():
    p = producer(env["TXN_ID"])
    p.init_transactions(30)
    produce_txn(p, "c1", [str(i) for i in range(10)])

    c, consumed = consume_input()
    result["consumed"] = sorted(consumed)
    assignment = c.assignment()
    result["positions"] = offsets(c.position(assignment))
    result["committed_before"] = offsets(c.committed(assignment, 30))
    produce_txn(p, "a", consumed, consumer=c, commit=False)
    result["committed_after_abort"] = offsets(c.committed(assignment, 30))
    produce_txn(p, "c2", consumed, consumer=c, commit=True)
    result["committed_after_commit"] = offsets(c.committed(assignment, 30))
    c.close()

    result["read_committed"] = read_all(env["TXN_OUT"], 3, "read_committed")
    result["read_uncommitted"] = read_all(env["TXN_OUT"], 3, "read_uncommitted")
    result["fence"] = fencing()


if __name__ == "__main__":
    code = 0
    try:
        main()
    except Exception:
        result["exception"] = traceback.format_exc()
        code = 1
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    sys.exit(code)

"""kafka-python (Debian's python3-kafka, 2.0.2) over SASL_SSL, for tests/security.

Run by /usr/bin/python3 with one argument:

  produce   send every line of stdin as a record value (acks=all), wait
            for every acknowledgement, exit non-zero on any failure;
  consume   read SEC_RECORDS records from the start of the topic in group
            SEC_GROUP, print their values one per line, commit, exit
            non-zero when fewer arrived within 60 s.

The connection comes from the environment: SEC_BOOTSTRAP, SEC_MECHANISM
(SCRAM-SHA-512 or PLAIN), SEC_USER, SEC_PASSWORD, SEC_CAFILE, SEC_TOPIC,
SEC_GROUP, SEC_RECORDS.
"""

import os
import sys

from kafka import KafkaConsumer, KafkaProducer


def connection():
    env = os.environ
    return dict(
        bootstrap_servers=env["SEC_BOOTSTRAP"],
        client_id="chronik-security-kafka-python",
        security_protocol="SASL_SSL",
        sasl_mechanism=env["SEC_MECHANISM"],
        sasl_plain_username=env["SEC_USER"],
        sasl_plain_password=env["SEC_PASSWORD"],
        ssl_cafile=env["SEC_CAFILE"],
        ssl_check_hostname=True,
    )


def produce():
    topic = os.environ["SEC_TOPIC"]
    producer = KafkaProducer(acks="all", **connection())
    futures = [producer.send(topic, value=line.rstrip("\n").encode()) for line in sys.stdin if line.strip()]
    producer.flush(timeout=60)
    for f in futures:
        f.get(timeout=60)  # raises the record's delivery error
    producer.close(timeout=10)


def consume():
    env = os.environ
    want = int(env["SEC_RECORDS"])
    consumer = KafkaConsumer(
        env["SEC_TOPIC"],
        group_id=env["SEC_GROUP"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=60000,
        **connection(),
    )
    got = 0
    for msg in consumer:
        sys.stdout.write(msg.value.decode() + "\n")
        got += 1
        if got == want:
            break
    sys.stdout.flush()
    consumer.commit()
    consumer.close()
    if got < want:
        sys.exit("consumed %d of %d records before the 60 s timeout" % (got, want))


if __name__ == "__main__":
    {"produce": produce, "consume": consume}[sys.argv[1]]()

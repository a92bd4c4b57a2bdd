"""moto's server with its requests handled one at a time.

DynamoDB runs each TransactWriteItems in isolation; moto's threaded server does not (a failed
transaction restores a copy of the whole table taken before it started, undoing writes other
threads committed meanwhile). Serializing requests gives the tests DynamoDB's isolation, so
the concurrency tests on this backend test our code, not moto's races.

moto also prepares each transaction's rollback by deep-copying the whole table, with every
stream record since it was created, once per item in the transaction: a test that makes a few
thousand changes then costs seconds a transaction and hundreds of MB, and every other test's
requests wait behind it (a stream test once saw nothing for 20 s). With requests serialized,
keeping the items a transaction touches and the stream's length is the same rollback, and that
is what `cheap_rollback` does.

Usage: python moto_serial.py -H 127.0.0.1 -p PORT
"""

import argparse
import copy
import signal
import sys
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def serialized(app):
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            # Materialize the body inside the lock: moto builds it while iterating.
            return list(app(environ, start_response))

    return handle


class _TablesNotCopied:
    """Stands for the `copy` module inside moto's DynamoDB backend: tables pass uncopied (the
    rollback below restores what a transaction touched), anything else is deep-copied."""

    @staticmethod
    def deepcopy(value, *args):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, *args)


def _touched(backend, transact_items):
    """(table, hash key, range key, deep copy of the item or None) for each operation."""
    touched = []
    for entry in transact_items:
        op_type, op = next(iter(entry.items()))
        table = backend.get_table(op["TableName"])
        key = op["Item"] if op_type == "Put" else op["Key"]
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = None
        if table.range_key_attr is not None:
            range_key = DynamoType(key[table.range_key_attr])
        current = table.get_item(hash_key, range_key)
        touched.append((table, hash_key, range_key, copy.deepcopy(current)))
    return touched


def cheap_rollback(transact_write_items):
    def transact(backend, transact_items):
        try:
            touched = _touched(backend, transact_items)
        except Exception:
            # A malformed request: moto's own checks answer it, before writing anything.
            touched = []
        streams = {
            id(table): (table.stream_shard, len(table.stream_shard.items))
            for table, *_ in touched
            if table.stream_shard is not None
        }
        try:
            return transact_write_items(backend, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(touched):
                holder = table.items[hash_key] if range_key is not None else table.items
                slot = range_key if range_key is not None else hash_key
                if item is None:
                    holder.pop(slot, None)
                else:
                    holder[slot] = item
            for shard, length in streams.values():
                del shard.items[length:]
            raise

    return transact


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    dynamodb_models.copy = _TablesNotCopied
    DynamoDBBackend.transact_write_items = cheap_rollback(DynamoDBBackend.transact_write_items)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialized(app), threaded=True)


if __name__ == "__main__":
    main()

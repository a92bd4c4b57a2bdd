"""moto's server with its requests handled one at a time.

DynamoDB runs each TransactWriteItems in isolation; moto's threaded server does not (a failed
transaction restores a copy of the whole table taken before it started, undoing writes other
threads committed meanwhile). Serializing requests gives the tests DynamoDB's isolation, so
the concurrency tests on this backend test our code, not moto's races.

Usage: python moto_serial.py -H 127.0.0.1 -p PORT
"""

import argparse
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def serialized(app):
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            # Materialize the body inside the lock: moto builds it while iterating.
            return list(app(environ, start_response))

    return handle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialized(app), threaded=True)


if __name__ == "__main__":
    main()

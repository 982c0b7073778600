"""A tf.data service for --data-service: a dispatcher and workers that prepare training batches elsewhere.

    python -m pipelines.data_service dispatcher --port 5050
    python -m pipelines.data_service worker --dispatcher localhost:5050 --port 5051     # one per machine or core
    python -m apps.image_classifier --data photos/ --data-service grpc://localhost:5050

The training process plans each epoch (which examples make each batch, and
each batch's augmentation seed: pipelines/input.py) and the service's workers
do the rest (reading and decoding files, augmenting) for whole batches, each
batch once, handed out as the workers finish them. So an epoch is the same
set of batches as without the service, in an order that depends on the
workers' timing: --deterministic is refused with it, and a resumed epoch goes
on from the batch it stopped at in the plan. The workers run the pipeline's
TensorFlow ops only (no Python), so they need the files at the same paths as
the training process (a shared disk) and nothing of this repository.
"""
from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.data_service", description=__doc__.split("\n\n")[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    dispatcher = kinds.add_parser("dispatcher", help="the service's coordinator: training connects to it")
    dispatcher.add_argument("--port", type=int, default=5050)
    worker = kinds.add_parser("worker", help="a process that prepares batches for the dispatcher's jobs")
    worker.add_argument("--dispatcher", required=True, metavar="HOST:PORT")
    worker.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)

    if args.port and not port_free(args.port):  # gRPC would share the port with the other server, silently
        print(f"error: port {args.port} is in use (another dispatcher or worker?); choose another with --port",
              file=sys.stderr)
        return 2
    import tensorflow as tf

    service = tf.data.experimental.service
    stop = threading.Event()
    reporter = None
    if args.kind == "dispatcher":
        server = service.DispatchServer(service.DispatcherConfig(port=args.port))
        print(f"tf.data service dispatcher at {server.target}; training: --data-service {server.target}", flush=True)
    else:
        address = args.dispatcher.split("://")[-1]
        server = service.WorkerServer(service.WorkerConfig(dispatcher_address=address, port=args.port))
        print(f"tf.data service worker for dispatcher {address}", flush=True)
        reporter = threading.Thread(target=report_tasks, args=(server, stop), daemon=True)
        reporter.start()
    # join() would block in TensorFlow's C++ where Python never sees SIGTERM or Ctrl-C: wait here instead.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    if reporter is not None:
        reporter.join()  # its last line before "stopped", and no count asked of a stopped server
    server.stop()
    print("stopped", flush=True)
    return 0


def port_free(port: int) -> bool:
    """Nothing answers on the port (a gRPC server binds with SO_REUSEPORT, so a bind test cannot tell)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def report_tasks(server, stop: threading.Event, every: float = 2.0) -> None:
    """A line whenever the worker has taken on new tasks (one per epoch of each training run it serves),
    until `stop` is set."""
    seen = 0
    while not stop.wait(every):
        try:
            count = server._num_tasks()  # noqa: SLF001  TensorFlow's only count of a worker's tasks
        except Exception:  # noqa: BLE001  a TensorFlow without it: the worker still works, silently
            return
        if count != seen:
            seen = count
            print(f"  tasks running on this worker: {count}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m collectors.receiver.probe``: exit 0 when the receiver's gRPC health says SERVING, 1 otherwise.

For container health checks (grpc_health_probe is not packaged for Debian): the receiver reports NOT_SERVING
while its database is unreachable, so an orchestrator stops routing to it.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = "telemetry.v1.TelemetryIngest"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collectors.receiver.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="receiver host:port [%(default)s]")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer [%(default)s]")
    args = parser.parse_args(argv)
    try:
        with grpc.insecure_channel(args.target) as channel:
            request = health_pb2.HealthCheckRequest(service=SERVICE)
            status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=args.timeout).status
    except grpc.RpcError as error:
        print(f"{args.target}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    print(f"{args.target}: {name}")
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())

"""An independent Envoy ext_authz v3 client for the gateway's gRPC tests: grpcio with the
xds-protos package (grpc's generated Envoy data-plane stubs), nothing built from keygate's
code. Reads one JSON array of cases on stdin, sends each as a CheckRequest to the target
given as the first argument, and prints one JSON line per case with what came back.

A case: {"name", "headers": {..}, "context_extensions": {..}, "method", "host", "path",
"scheme", "source_ip", "no_attributes": bool, "no_http": bool, "garbage": bool}.
`garbage` sends bytes that are not a CheckRequest at all."""
import json
import sys

import grpc
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

METHOD = "/envoy.service.auth.v3.Authorization/Check"


def request_of(case):
    if case.get("no_attributes"):
        return external_auth_pb2.CheckRequest()
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=case.get("method", "GET"),
        host=case.get("host", "app.example.com"),
        path=case.get("path", "/orders?id=1"),
        scheme=case.get("scheme", "https"),
        protocol="HTTP/1.1",
        headers=case.get("headers", {}),
    )
    attributes = attribute_context_pb2.AttributeContext(
        context_extensions=case.get("context_extensions", {}),
        source=attribute_context_pb2.AttributeContext.Peer(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(
                    address=case.get("source_ip", "203.0.113.9"), port_value=40000
                )
            )
        ),
    )
    if not case.get("no_http"):
        attributes.request.CopyFrom(attribute_context_pb2.AttributeContext.Request(http=http))
    return external_auth_pb2.CheckRequest(attributes=attributes)


def headers_of(options):
    return {o.header.key: o.header.value for o in options}


def main():
    target = sys.argv[1]
    cases = json.load(sys.stdin)
    with grpc.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        raw = channel.unary_unary(
            METHOD,
            request_serializer=lambda b: b,
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        for case in cases:
            out = {"name": case["name"]}
            try:
                if case.get("garbage"):
                    response = raw(b"\xff\xff\xff\xff\x0f", timeout=10)
                else:
                    response = stub.Check(request_of(case), timeout=10)
                out["rpc"] = "OK"
                out["code"] = response.status.code
                out["message"] = response.status.message
                kind = response.WhichOneof("http_response")
                out["kind"] = kind
                if kind == "ok_response":
                    out["headers"] = headers_of(response.ok_response.headers)
                    out["actions"] = {
                        o.header.key: base_pb2.HeaderValueOption.HeaderAppendAction.Name(
                            o.append_action
                        )
                        for o in response.ok_response.headers
                    }
                    out["headers_to_remove"] = list(response.ok_response.headers_to_remove)
                elif kind == "denied_response":
                    out["status"] = response.denied_response.status.code
                    out["headers"] = headers_of(response.denied_response.headers)
                    out["body"] = response.denied_response.body
            except grpc.RpcError as e:
                out["rpc"] = e.code().name
                out["details"] = e.details()
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

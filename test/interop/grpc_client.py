"""A stock gRPC client (Debian's python3-grpcio) built only from proto/.

Usage: grpc_client.py STUBS_DIR HOST:PORT LIVE_PID
Calls GetInfo, GetPid, Register (good and bad), SubscribeExits and Deregister
over real gRPC (HTTP/2) and prints one JSON object with what it saw. With
TASKWIRE_TOKEN set, every call carries it as a bearer token (gRPC metadata
"authorization: Bearer <token>"), and one call without it shows the refusal.
"""
import json
import os
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from taskwire.v1 import taskstats_pb2 as pb  # noqa: E402
from taskwire.v1 import taskstats_pb2_grpc as rpc  # noqa: E402



def status_type():
    """google.rpc.Status (code, message, details), declared here: Debian ships no googleapis protos for grpcio."""
    from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
    fdp = descriptor_pb2.FileDescriptorProto(name="interop/status.proto", package="google.rpc", syntax="proto3",
                                             dependency=["google/protobuf/any.proto"])
    m = fdp.message_type.add(name="Status")
    F = descriptor_pb2.FieldDescriptorProto
    m.field.add(name="code", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    m.field.add(name="message", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="details", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED, type_name=".google.protobuf.Any")
    pool = descriptor_pool.Default()
    pool.FindFileByName(any_pb2.DESCRIPTOR.name)
    pool.Add(fdp)
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("google.rpc.Status"))


Status = status_type()


def error_detail(e):
    """taskwire's ErrorDetail from grpc-status-details-bin, as {reason, metadata}."""
    for key, value in e.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for any_detail in Status.FromString(value).details:
                detail = pb.ErrorDetail()
                if any_detail.Unpack(detail):
                    return {"reason": pb.ErrorReason.Name(detail.reason), "metadata": dict(detail.metadata)}
    return None


target, live_pid = sys.argv[2], int(sys.argv[3])
token = os.environ.get("TASKWIRE_TOKEN")
md = [("authorization", f"Bearer {token}")] if token else None
out = {}
with grpc.insecure_channel(target) as channel:
    stub = rpc.TaskStatsStub(channel)
    if token:
        try:
            stub.GetInfo(pb.GetInfoRequest(), timeout=10)
            out["no_token"] = {"code": "OK"}
        except grpc.RpcError as e:
            out["no_token"] = {"code": e.code().name, "detail": error_detail(e)}
    info = stub.GetInfo(pb.GetInfoRequest(), timeout=10, metadata=md)
    out["info"] = {"source": info.source, "possible_cpus": info.possible_cpus, "version": info.taskstats_version}
    got = stub.GetPid(pb.GetPidRequest(pid=live_pid), timeout=10, metadata=md)
    out["pid"] = {"ac_pid": got.stats.ac_pid, "has_comm": got.stats.HasField("ac_comm"), "comm": got.stats.ac_comm}
    for name, call in [("bad_mask", lambda: stub.Register(pb.RegisterRequest(cpumask="0-4096"), timeout=10, metadata=md)),
                       ("no_task", lambda: stub.GetPid(pb.GetPidRequest(pid=4000000), timeout=10, metadata=md))]:
        try:
            call()
            out[name] = {"code": "OK"}
        except grpc.RpcError as e:
            out[name] = {"code": e.code().name, "details": e.details(), "detail": error_detail(e)}
    reg = stub.Register(pb.RegisterRequest(cpumask="0-7"), timeout=10, metadata=md)
    out["register"] = {"cpumask": reg.cpumask, "id_len": len(reg.listener_id)}
    stream = stub.SubscribeExits(pb.SubscribeExitsRequest(listener_id=reg.listener_id), timeout=20, metadata=md)
    events = []
    for msg in stream:
        for ev in msg.events:
            events.append({"seq": ev.seq, "cpu": ev.cpu, "kind": ev.WhichOneof("event"), "comm": ev.exit.pid_stats.ac_comm})
        if len(events) >= 10:
            stream.cancel()
            break
    out["events"] = events
    out["deregister"] = stub.Deregister(pb.DeregisterRequest(listener_id=reg.listener_id, cpumask="all"), timeout=10, metadata=md).cpumask
print(json.dumps(out))

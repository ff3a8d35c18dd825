#!/usr/bin/env python3
"""A client of the Open Inference Protocol's gRPC service, as a Python user writes one: its stubs are the ones
grpc_tools generates from open_inference_grpc.proto (into a folder on PYTHONPATH, or --stubs), nothing of
HitGpu's. Reads songs from standard input (one song a line, 15 numbers separated by commas), calls
ModelInfer with them in fp32_contents (or raw_input_contents with --raw), and prints the answer as one JSON
object: model_name, model_version, id, the output's name, datatype and shape, and its values (float32s, in
Python's shortest repr of each, which reads back to the same float32). A refused call prints its status code
and details, and exits 1.

    python3 -m grpc_tools.protoc -I src/HitGpu.Serve/Protos --python_out=stubs --grpc_python_out=stubs open_inference_grpc.proto
    python3 grpc_client.py --stubs stubs --target 127.0.0.1:8081 --model hits < songs.txt
"""
import argparse
import json
import struct
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stubs", help="folder holding open_inference_grpc_pb2*.py")
    parser.add_argument("--target", required=True, help="host:port of the gRPC service")
    parser.add_argument("--model", required=True)
    parser.add_argument("--id", default="python")
    parser.add_argument("--raw", action="store_true", help="send raw_input_contents (FP32 little-endian)")
    parser.add_argument("--api-key", help="sent as the authorization metadata, Bearer KEY")
    args = parser.parse_args()
    if args.stubs:
        sys.path.insert(0, args.stubs)
    import grpc
    import open_inference_grpc_pb2 as pb
    import open_inference_grpc_pb2_grpc as pb_grpc

    songs = [[float(v) for v in line.split(",")] for line in sys.stdin.read().splitlines() if line.strip()]
    flat = [v for song in songs for v in song]
    tensor = pb.ModelInferRequest.InferInputTensor(name="features", datatype="FP32", shape=[len(songs), 15])
    request = pb.ModelInferRequest(model_name=args.model, id=args.id, inputs=[tensor])
    if args.raw:
        request.raw_input_contents.append(struct.pack(f"<{len(flat)}f", *flat))
    else:
        request.inputs[0].contents.fp32_contents.extend(flat)
    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else None
    with grpc.insecure_channel(args.target) as channel:
        try:
            answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, metadata=metadata, timeout=60)
        except grpc.RpcError as error:
            print(json.dumps({"code": error.code().name, "details": error.details()}))
            return 1
    output = answer.outputs[0]
    if answer.raw_output_contents:
        raw = answer.raw_output_contents[0]
        values = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    else:
        values = list(output.contents.fp32_contents)
    print(json.dumps({"model_name": answer.model_name, "model_version": answer.model_version, "id": answer.id,
                      "name": output.name, "datatype": output.datatype, "shape": list(output.shape), "data": values}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

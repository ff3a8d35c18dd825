// The Open Inference Protocol's gRPC service (GRPCInferenceService, compiled from its own proto file in
// Protos/): health, metadata and inference, on its own HTTP/2 port (ServeOptions.GrpcPort) of the same server.
// Every call passes what a REST request passes (HitEndpoints.Admit: the allowed hosts, the API key from the
// call's metadata), and its songs take the REST path's checks (SongRequests) and its scorers (ScoringQueue,
// batched with the REST requests); only the tensor's envelope is read here. Its answers are REST's, bit for
// bit; a refusal is REST's words with the gRPC status of REST's HTTP status (StatusOf).
using System.Buffers;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using HitGpu.Nn;
using Inference;
using Microsoft.AspNetCore.Http;

namespace HitGpu.Serve;

public sealed class GrpcInference(HitEndpoints endpoints) : GRPCInferenceService.GRPCInferenceServiceBase
{
    /// <summary>The health calls' paths: a prober asks them without a key, as it asks REST's /v2/health/*.</summary>
    public const string LivePath = "/inference.GRPCInferenceService/ServerLive", ReadyPath = "/inference.GRPCInferenceService/ServerReady";

    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerReadyResponse { Ready = true });

    public override Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerMetadataResponse
        {
            Name = HitEndpoints.ServerName,
            Version = HitEndpoints.ServerVersion,
            Extensions = { HitEndpoints.Extensions },
        });

    public override Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context) => Guarded(context, () =>
    {
        endpoints.Known(request.Name, request.Version);
        return Task.FromResult(new ModelReadyResponse { Ready = true });
    });

    public override Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context) => Guarded(context, () =>
    {
        endpoints.Known(request.Name, request.Version);
        return Task.FromResult(new ModelMetadataResponse
        {
            Name = endpoints.Options.Name,
            Versions = { SongRequests.ModelVersion },
            Platform = HitEndpoints.Platform,
            Inputs = { Tensor(SongRequests.InputName, SongData.FeatureCount) },
            Outputs = { Tensor(SongRequests.OutputName, 1) },
            Properties = { ["features"] = string.Join(",", SongData.FeatureNames) }, // the columns' order, as REST's input parameters give it
        });
    });

    private static ModelMetadataResponse.Types.TensorMetadata Tensor(string name, int width) =>
        new() { Name = name, Datatype = SongRequests.Datatype, Shape = { -1, width } };

    /// <summary>Scores the songs of the request's one input; the answer's values come the way the request's came (raw bytes, or fp32_contents).</summary>
    public override Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context) => Guarded(context, async () =>
    {
        ModelInferResponse response = null!;
        await endpoints.Limited(async () =>
        {
            endpoints.Known(request.ModelName, request.ModelVersion);
            var (features, raw) = Features(request, endpoints.Options.MaxRows);
            context.GetHttpContext().Items[HitEndpoints.RowsItem] = features.Length / SongData.FeatureCount;
            float[] probabilities = await endpoints.Queue.Score(features);
            var output = new ModelInferResponse.Types.InferOutputTensor
            {
                Name = SongRequests.OutputName,
                Datatype = SongRequests.Datatype,
                Shape = { probabilities.Length, 1 },
            };
            response = new ModelInferResponse
            {
                ModelName = endpoints.Options.Name,
                ModelVersion = SongRequests.ModelVersion,
                Id = request.Id,
                Outputs = { output },
            };
            if (raw)
            {
                var bytes = new ArrayBufferWriter<byte>(probabilities.Length * sizeof(float));
                SongRequests.WriteBinary(bytes, probabilities);
                response.RawOutputContents.Add(ByteString.CopyFrom(bytes.WrittenSpan));
            }
            else
            {
                output.Contents = new InferTensorContents { Fp32Contents = { probabilities } };
            }
        });
        return response;
    });

    /// <summary>
    /// The raw features of a request's one input tensor, from raw_input_contents (FP32, little-endian) or from
    /// contents.fp32_contents, checked as REST's are (SongRequests); whether they came raw.
    /// </summary>
    internal static (float[] Features, bool Raw) Features(ModelInferRequest request, int maxRows)
    {
        SongRequests.RequireOneInput(request.Inputs.Count);
        foreach (var asked in request.Outputs)
            if (asked.Name != SongRequests.OutputName)
                throw SongRequests.UnknownOutput($"'{InputException.OneLine(asked.Name)}'");
        var input = request.Inputs[0];
        int rows = SongRequests.InputRows(input.Name, input.Datatype, input.Shape, $"[{string.Join(", ", input.Shape)}]", maxRows);
        var contents = input.Contents;
        if (request.RawInputContents.Count > 0)
        {
            if (request.RawInputContents.Count != 1)
                throw new InputException($"{SongRequests.Source}: raw_input_contents has {request.RawInputContents.Count} entries; the one input takes one");
            if (contents is not null && contents.CalculateSize() > 0)
                throw new InputException($"{SongRequests.InputPlace}: both contents and raw_input_contents: send the values one way");
            var raw = request.RawInputContents[0];
            SongRequests.RequireBytes("raw_input_contents[0]'s length", raw.Length, rows);
            return (SongRequests.FromLittleEndian(raw.Span), true);
        }
        if (contents is not null && OtherContents(contents) is { } other)
            throw new InputException(
                $"{SongRequests.InputPlace}: {SongRequests.Datatype} values go in contents.fp32_contents or raw_input_contents, got {other}");
        var values = contents?.Fp32Contents ?? [];
        var features = new float[SongRequests.RequireValues("fp32_contents", values.Count, rows)];
        values.CopyTo(features, 0);
        return (SongRequests.Checked(features), false);
    }

    /// <summary>The first typed field of the contents other than fp32_contents that holds values, or null.</summary>
    private static string? OtherContents(InferTensorContents contents) =>
        contents.BoolContents.Count > 0 ? "bool_contents"
        : contents.IntContents.Count > 0 ? "int_contents"
        : contents.Int64Contents.Count > 0 ? "int64_contents"
        : contents.UintContents.Count > 0 ? "uint_contents"
        : contents.Uint64Contents.Count > 0 ? "uint64_contents"
        : contents.Fp64Contents.Count > 0 ? "fp64_contents"
        : contents.BytesContents.Count > 0 ? "bytes_contents"
        : null;

    /// <summary>Runs a call; a refusal becomes an RpcException with its words and the gRPC status of its HTTP status, as REST's Guard answers it.</summary>
    private async Task<T> Guarded<T>(ServerCallContext context, Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (Exception e) when (e is not RpcException && endpoints.Refusal(e) is var (status, message))
        {
            if (status == 500)
                context.GetHttpContext().Items[HitEndpoints.FailureItem] = $"{e.GetType().Name}: {InputException.OneLine(e.Message)}";
            ServeMetrics.Refused(context.GetHttpContext(), e, status);
            throw new RpcException(new Status(StatusOf(status), message));
        }
    }

    /// <summary>The gRPC status of a refusal's HTTP status: one table for the calls' refusals and the pipeline's (HitEndpoints.Error).</summary>
    public static StatusCode StatusOf(int status) => status switch
    {
        StatusCodes.BadRequest or StatusCodes.UnsupportedType => StatusCode.InvalidArgument,
        StatusCodes.Unauthorized => StatusCode.Unauthenticated,
        StatusCodes.NotFound => StatusCode.NotFound,
        StatusCodes.NotAllowed => StatusCode.Unimplemented,
        StatusCodes.TooLarge => StatusCode.ResourceExhausted,
        StatusCodes.Unavailable => StatusCode.Unavailable,
        _ => StatusCode.Internal,
    };

    /// <summary>Whether a request is a gRPC call (its content type says so).</summary>
    public static bool IsGrpc(HttpRequest request) => request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    /// <summary>
    /// The gRPC status a call was answered with (in its trailers, or its headers when trailers-only); null for a
    /// request that is not a call, or one not answered.
    /// </summary>
    public static StatusCode? AnsweredStatus(HttpContext context)
    {
        if (!IsGrpc(context.Request))
            return null;
        var trailers = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseTrailersFeature>()?.Trailers;
        string? code = trailers?["grpc-status"] is [{ } trailer] ? trailer : context.Response.Headers["grpc-status"] is [{ } header] ? header : null;
        return int.TryParse(code, NumberStyles.None, CultureInfo.InvariantCulture, out int value) ? (StatusCode)value : null;
    }

    /// <summary>
    /// A refusal of a gRPC call before it reached the service (the allowed hosts, the API key), in gRPC's
    /// trailers-only form: HTTP 200 with grpc-status and grpc-message (percent-encoded, as the protocol asks) and no body.
    /// </summary>
    public static Task Refuse(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/grpc";
        context.Response.Headers["grpc-status"] = ((int)StatusOf(status)).ToString(CultureInfo.InvariantCulture);
        context.Response.Headers["grpc-message"] = string.Concat(System.Text.Encoding.UTF8.GetBytes(message)
            .Select(b => b is >= 0x20 and <= 0x7E and not (byte)'%' ? ((char)b).ToString() : $"%{b:X2}"));
        return Task.CompletedTask;
    }
}

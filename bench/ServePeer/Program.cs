// The peer of `hitgpu serve` in bench/serve/load.sh: the model exported to ONNX, one shared InferenceSession,
// and the KServe v2 infer endpoint of the contract, one ONNX Runtime call per request (no dynamic batching).
// Args: --model m.onnx --name NAME --urls http://127.0.0.1:PORT [--intra-op-threads 1]
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.OnnxRuntime;
using OrtSessionOptions = Microsoft.ML.OnnxRuntime.SessionOptions;

string? modelPath = null, modelName = "model", urls = "http://127.0.0.1:8080";
// One thread per Run: the concurrency comes from the requests, and ONNX Runtime's intra-op pool (spinning
// threads) would compete with Kestrel's for the cores. --intra-op-threads 0 gives ORT's default pool.
int intraOpThreads = 1;
for (int i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--model": modelPath = args[i + 1]; break;
        case "--name": modelName = args[i + 1]; break;
        case "--urls": urls = args[i + 1]; break;
        case "--intra-op-threads": intraOpThreads = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}
if (modelPath is null)
{
    Console.Error.WriteLine("usage: ServePeer --model m.onnx [--name NAME] [--urls http://127.0.0.1:PORT] [--intra-op-threads 1]");
    return 2;
}

var builder = WebApplication.CreateSlimBuilder();
builder.WebHost.UseUrls(urls);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
// The options, not the context's attributes, decide the names when the context sits in the resolver chain.
builder.Services.ConfigureHttpJsonOptions(o =>
{
    o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
    o.SerializerOptions.DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull;
    o.SerializerOptions.TypeInfoResolverChain.Insert(0, PeerJson.Default);
});

// InferenceSession.Run is thread-safe: one session serves every request.
using var sessionOptions = new OrtSessionOptions { IntraOpNumThreads = intraOpThreads };
using var session = new InferenceSession(modelPath, sessionOptions);
using var runOptions = new RunOptions();
string[] inputNames = ["features"], outputNames = ["probability"];
const int FeatureCount = 15;

var app = builder.Build();
app.MapGet("/v2/health/ready", () => TypedResults.Ok(new ReadyResponse(true)));
app.MapPost("/v2/models/{name}/infer", IResult (string name, InferRequest request) =>
{
    if (name != modelName)
        return TypedResults.NotFound(new ErrorResponse($"unknown model '{name}'"));
    if (request.Inputs is not [{ Name: "features", Datatype: "FP32", Shape: [var rows, FeatureCount], Data: { } data }] || rows < 1)
        return TypedResults.BadRequest(new ErrorResponse("expected one FP32 input 'features' of shape [N,15]"));
    if (data.Length != rows * FeatureCount)
        return TypedResults.BadRequest(new ErrorResponse($"shape [{rows},{FeatureCount}] needs {rows * FeatureCount} numbers, got {data.Length}"));

    // Both tensors wrap the managed arrays (pinned for the call): ONNX Runtime reads the request's floats and
    // writes the answer's in place, no copies.
    var probabilities = new float[rows];
    using var input = OrtValue.CreateTensorValueFromMemory(data, [rows, FeatureCount]);
    using var output = OrtValue.CreateTensorValueFromMemory(probabilities, [rows]);
    session.Run(runOptions, inputNames, [input], outputNames, [output]);
    return TypedResults.Ok(new InferResponse(modelName, request.Id, [new Tensor("probability", [rows, 1], "FP32", probabilities)]));
});
app.Run();
return 0;

internal sealed record InferRequest(string? Id, Tensor[] Inputs);
internal sealed record InferResponse(string ModelName, string? Id, Tensor[] Outputs);
internal sealed record Tensor(string Name, long[] Shape, string Datatype, float[]? Data);
internal sealed record ReadyResponse(bool Ready);
internal sealed record ErrorResponse(string Error);

[JsonSerializable(typeof(InferRequest))]
[JsonSerializable(typeof(InferResponse))]
[JsonSerializable(typeof(ReadyResponse))]
[JsonSerializable(typeof(ErrorResponse))]
internal sealed partial class PeerJson : JsonSerializerContext;

// The Open Inference Protocol's gRPC service, called as its clients call it (Grpc.Net.Client, over HTTP/2 on the
// server's gRPC port; and a Python client whose stubs grpc_tools generates from the same proto file): the same
// songs give REST's answer bit for bit, with fp32_contents and with raw bytes; metadata says what REST says;
// refusals carry REST's words with the matching gRPC status; the API key holds; gRPC and REST requests share
// the scorers' launches. The Python test needs python3's grpc and grpc_tools modules (Debian's python3-grpcio
// and python3-grpc-tools): without them it says it is skipped, unless HITGPU_REQUIRE_GRPC_PYTHON=1 (CI) makes
// that a failure.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Inference;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class GrpcTests(ServerFixture server)
{
    private static GrpcChannel Channel(HitServer served) => GrpcChannel.ForAddress(served.GrpcAddresses[0]);

    private static GRPCInferenceService.GRPCInferenceServiceClient Client(GrpcChannel channel) => new(channel);

    /// <summary>An answer's probabilities, from its raw bytes (FP32, little-endian) or its fp32_contents.</summary>
    private static float[] Values(ModelInferResponse answer) => answer.RawOutputContents is [var raw]
        ? [.. Enumerable.Range(0, raw.Length / sizeof(float)).Select(i => BinaryPrimitives.ReadSingleLittleEndian(raw.Span[(i * sizeof(float))..]))]
        : [.. answer.Outputs[0].Contents.Fp32Contents];

    private static ModelInferRequest Request(float[] features, bool raw, string model = "hits", string? id = null)
    {
        int rows = features.Length / SongData.FeatureCount;
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "features", Datatype = "FP32", Shape = { rows, SongData.FeatureCount } };
        var request = new ModelInferRequest { ModelName = model, Id = id ?? "", Inputs = { input } };
        if (raw)
            request.RawInputContents.Add(ByteString.CopyFrom(LittleEndian(features)));
        else
            input.Contents = new InferTensorContents { Fp32Contents = { features } };
        return request;
    }

    private static byte[] LittleEndian(float[] values)
    {
        var bytes = new byte[values.Length * sizeof(float)];
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), values[i]);
        return bytes;
    }

    /// <summary>The library's probabilities of the songs, scored alone, without a server.</summary>
    private float[] Alone(float[] features) => server.Model.PredictProbabilities(server.Device, new SongTable { Source = "alone", Features = features });

    private static int[] Bits(IEnumerable<float> values) => [.. values.Select(BitConverter.SingleToInt32Bits)];

    /// <summary>REST's answer to the same songs, as JSON over HTTP/1.1.</summary>
    private async Task<float[]> Rest(float[] features)
    {
        var (status, body, _) = await Post(server.Client, "/v2/models/hits/infer", Infer(features));
        Assert.Equal(HttpStatusCode.OK, status);
        return Probabilities(body);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Infer_over_grpc_gives_the_rest_answer_bit_for_bit(bool raw)
    {
        using var channel = Channel(server.Server);
        var features = Features(40, 37);
        var rest = await Rest(features);
        var answer = await Client(channel).ModelInferAsync(Request(features, raw, id: "g-1"));
        Assert.Equal(("hits", "1", "g-1"), (answer.ModelName, answer.ModelVersion, answer.Id));
        var output = Assert.Single(answer.Outputs);
        Assert.Equal(("probability", "FP32"), (output.Name, output.Datatype));
        Assert.Equal([37L, 1L], output.Shape);
        // The values come the way they were sent: raw bytes for raw bytes, fp32_contents for fp32_contents.
        float[] probabilities = Values(answer);
        Assert.Equal(raw, output.Contents is null);
        Assert.Equal(raw ? 1 : 0, answer.RawOutputContents.Count);
        Assert.Equal(Bits(rest), Bits(probabilities));
        Assert.Equal(Bits(Alone(features)), Bits(probabilities));
    }

    [Fact]
    public async Task Health_and_metadata_over_grpc_say_what_rest_says()
    {
        using var channel = Channel(server.Server);
        var client = Client(channel);
        Assert.True((await client.ServerLiveAsync(new ServerLiveRequest())).Live);
        Assert.True((await client.ServerReadyAsync(new ServerReadyRequest())).Ready);
        Assert.True((await client.ModelReadyAsync(new ModelReadyRequest { Name = "hits" })).Ready);
        Assert.True((await client.ModelReadyAsync(new ModelReadyRequest { Name = "hits", Version = "1" })).Ready);

        var serverRest = JsonNode.Parse((await Get(server.Client, "/v2")).Body)!;
        var serverGrpc = await client.ServerMetadataAsync(new ServerMetadataRequest());
        Assert.Equal(serverRest["name"]!.GetValue<string>(), serverGrpc.Name);
        Assert.Equal(serverRest["version"]!.GetValue<string>(), serverGrpc.Version);
        Assert.Equal(serverRest["extensions"]!.AsArray().Select(e => e!.GetValue<string>()), serverGrpc.Extensions);

        var modelRest = JsonNode.Parse((await Get(server.Client, "/v2/models/hits")).Body)!;
        var modelGrpc = await client.ModelMetadataAsync(new ModelMetadataRequest { Name = "hits" });
        Assert.Equal(modelRest["name"]!.GetValue<string>(), modelGrpc.Name);
        Assert.Equal(modelRest["platform"]!.GetValue<string>(), modelGrpc.Platform);
        Assert.Equal(modelRest["versions"]!.AsArray().Select(v => v!.GetValue<string>()), modelGrpc.Versions);
        foreach (var (rest, grpc) in new[] { (modelRest["inputs"]!, modelGrpc.Inputs), (modelRest["outputs"]!, modelGrpc.Outputs) })
        {
            var tensor = Assert.Single(grpc);
            Assert.Equal(rest[0]!["name"]!.GetValue<string>(), tensor.Name);
            Assert.Equal(rest[0]!["datatype"]!.GetValue<string>(), tensor.Datatype);
            Assert.Equal(rest[0]!["shape"]!.AsArray().Select(d => d!.GetValue<long>()), tensor.Shape);
        }
        Assert.Equal(modelRest["inputs"]![0]!["parameters"]!["features"]!.GetValue<string>(), modelGrpc.Properties["features"]);
    }

    /// <summary>A REST request with the same fault, where REST can say it: its refusal's line is the gRPC call's details.</summary>
    private static string? RestTwin(string fault) => fault switch
    {
        "unknown model" => "/v2/models/other/infer " + Infer(Features(0, 1)),
        "unknown version" => "/v2/models/hits/versions/2/infer " + Infer(Features(0, 1)),
        "shape" => "/v2/models/hits/infer " + Infer(Features(0, 2)).Replace("\"shape\":[2,15]", "\"shape\":[2,14]"),
        "datatype" => "/v2/models/hits/infer " + Infer(Features(0, 1)).Replace("\"FP32\"", "\"FP64\""),
        "two inputs" => "/v2/models/hits/infer {\"inputs\": [{\"name\": \"features\"}, {\"name\": \"features\"}]}",
        "unknown output" => "/v2/models/hits/infer " + Infer(Features(0, 1)).Replace("\"inputs\"", "\"outputs\":[{\"name\":\"score\"}],\"inputs\""),
        "too many songs" => "/v2/models/hits/infer " + Infer(Features(0, 1)).Replace("\"shape\":[1,15]", "\"shape\":[5001,15]"),
        _ => null,
    };

    private static ModelInferRequest Faulty(string fault)
    {
        var features = Features(0, 2);
        var request = Request(features, raw: false);
        var input = request.Inputs[0];
        switch (fault)
        {
            case "unknown model": request = Request(Features(0, 1), raw: false, model: "other"); break;
            case "unknown version": request = Request(Features(0, 1), raw: false); request.ModelVersion = "2"; break;
            case "shape": input.Shape[1] = 14; break;
            case "datatype": request = Request(Features(0, 1), raw: false); request.Inputs[0].Datatype = "FP64"; break;
            case "two inputs": request.Inputs.Add(input.Clone()); break;
            case "unknown output":
                request = Request(Features(0, 1), raw: false);
                request.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "score" });
                break;
            case "too many songs": input.Shape[0] = 5001; input.Contents = null; break;
            case "not finite": input.Contents.Fp32Contents[SongData.FeatureCount + 10] = float.NaN; break;
            case "not finite raw":
                features[3] = float.PositiveInfinity;
                request = Request(features, raw: true);
                break;
            case "too few values": input.Contents.Fp32Contents.RemoveAt(0); break;
            case "raw bytes short":
                request = Request(features, raw: true);
                request.RawInputContents[0] = ByteString.CopyFrom(request.RawInputContents[0].Span[4..]);
                break;
            case "both forms": request.RawInputContents.Add(ByteString.CopyFrom(LittleEndian(features))); break;
            case "fp64 contents": input.Contents = new InferTensorContents { Fp64Contents = { features.Select(v => (double)v) } }; break;
            case "too large": request = Request(Features(0, 1), raw: true); request.RawInputContents[0] = ByteString.CopyFrom(new byte[(4 << 20) + 60]); break;
            default: throw new ArgumentException(fault);
        }
        return request;
    }

    [Theory]
    [InlineData("unknown model", StatusCode.NotFound, "unknown model 'other': this server serves 'hits'")]
    [InlineData("unknown version", StatusCode.NotFound, "model 'hits' has no version '2'")]
    [InlineData("shape", StatusCode.InvalidArgument, "request body: input 'features': shape must be [N, 15] (N songs), got [2, 14]")]
    [InlineData("datatype", StatusCode.InvalidArgument, "request body: input 'features': datatype must be FP32, got 'FP64'")]
    [InlineData("two inputs", StatusCode.InvalidArgument, "request body: the model takes one input, 'features'; the request has 2")]
    [InlineData("unknown output", StatusCode.InvalidArgument, "request body: unknown output 'score'")]
    [InlineData("too many songs", StatusCode.ResourceExhausted, "request body: 5001 songs, more than the 5000 a request may send (ServeOptions.MaxRows)")]
    [InlineData("not finite", StatusCode.InvalidArgument, "request body: input 'features': song 2: tempo must be finite, got 'NaN'")]
    [InlineData("not finite raw", StatusCode.InvalidArgument, "request body: input 'features': song 1: loudness must be finite, got 'Infinity'")]
    [InlineData("too few values", StatusCode.InvalidArgument, "request body: input 'features': fp32_contents has 29 values, the shape [2, 15] needs 30")]
    [InlineData("raw bytes short", StatusCode.InvalidArgument,
        "request body: input 'features': raw_input_contents[0]'s length is 116, the shape [2, 15] of FP32 needs 120")]
    [InlineData("both forms", StatusCode.InvalidArgument, "request body: input 'features': both contents and raw_input_contents")]
    [InlineData("fp64 contents", StatusCode.InvalidArgument,
        "request body: input 'features': FP32 values go in contents.fp32_contents or raw_input_contents, got fp64_contents")]
    [InlineData("too large", StatusCode.ResourceExhausted, "Received message exceeds the maximum configured message size.")]
    public async Task A_bad_call_is_refused_with_its_grpc_status_in_rest_s_words(string fault, StatusCode code, string expected)
    {
        using var channel = Channel(server.Server);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await Client(channel).ModelInferAsync(Faulty(fault)));
        Assert.Equal(code, refused.StatusCode);
        Assert.StartsWith(expected, refused.Status.Detail);
        if (RestTwin(fault) is { } twin)
        {
            var (status, body, _) = await Post(server.Client, twin[..twin.IndexOf(' ')], twin[(twin.IndexOf(' ') + 1)..]);
            Assert.Equal(code, GrpcInference.StatusOf((int)status));
            // REST says the shape as the client wrote it; gRPC's has no text of its own.
            Assert.Equal(Error(body).Replace("[2,14]", "[2, 14]"), refused.Status.Detail);
        }
        // The service goes on answering.
        Assert.True((await Client(channel).ModelInferAsync(Request(Features(0, 1), raw: false))).Outputs.Count == 1);
    }

    [Fact]
    public async Task Each_call_is_logged_with_its_songs_and_its_grpc_status()
    {
        using var channel = Channel(server.Server);
        string id = Guid.NewGuid().ToString("N");
        await Client(channel).ModelInferAsync(Request(Features(0, 6), raw: true, id: id));
        await Assert.ThrowsAsync<RpcException>(async () => await Client(channel).ModelInferAsync(Request(Features(0, 1), raw: false, model: id)));
        string[] lines = [];
        for (int wait = 0; wait < 50 && lines.Length < 2; wait++, await Task.Delay(100)) // the log is written by its own task
            lines = [.. server.LogText.Split('\n').Where(l => l.Contains(" POST /inference.GRPCInferenceService/ModelInfer ", StringComparison.Ordinal))];
        Assert.Contains(lines, l => l.Contains("ModelInfer rows=6 status=200 grpc=OK ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("ModelInfer rows=- status=200 grpc=NotFound ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Metadata_of_an_unknown_model_or_version_is_not_found()
    {
        using var channel = Channel(server.Server);
        var client = Client(channel);
        foreach (var call in new Func<Task>[]
        {
            async () => await client.ModelMetadataAsync(new ModelMetadataRequest { Name = "other" }),
            async () => await client.ModelReadyAsync(new ModelReadyRequest { Name = "other" }),
            async () => await client.ModelReadyAsync(new ModelReadyRequest { Name = "hits", Version = "7" }),
        })
            Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(call)).StatusCode);
    }

    [Fact]
    public async Task A_busy_or_stopping_server_answers_unavailable()
    {
        await using var small = await server.StartAsync(server.Model, new ServeOptions { Name = "hits", Port = 0, GrpcPort = 0, MaxInFlight = 1 });
        using var rest = ServerFixture.ClientOf(small);
        using var channel = Channel(small);
        var slow = Post(rest, "/predict?explain=true", Records(Features(100, 300))); // explanations of 300 songs take a while
        await Task.Delay(200);
        Assert.False(slow.IsCompleted, "the explanation finished before the gRPC call came");
        var busy = await Assert.ThrowsAsync<RpcException>(async () => await Client(channel).ModelInferAsync(Request(Features(0, 1), raw: true)));
        Assert.Equal(StatusCode.Unavailable, busy.StatusCode);
        Assert.StartsWith("busy: 1 requests with songs in flight, the most this server takes (ServeOptions.MaxInFlight)", busy.Status.Detail);
        Assert.Equal(HttpStatusCode.OK, (await slow).Status);
        Assert.Single((await Client(channel).ModelInferAsync(Request(Features(0, 1), raw: true))).RawOutputContents);
        // A stop's refusal (the scorers no longer take songs) has the same gRPC status.
        Assert.Equal(StatusCode.Unavailable, GrpcInference.StatusOf(small.Endpoints.Refusal(new ScoringQueue.StoppingException())!.Value.Status));
    }

    [Fact]
    public async Task A_call_after_a_stop_began_is_unavailable_while_the_requests_in_flight_finish()
    {
        await using var stopping = await server.StartAsync(server.Model, new ServeOptions { Name = "hits", Port = 0, GrpcPort = 0 });
        using var rest = ServerFixture.ClientOf(stopping);
        using var channel = Channel(stopping);
        Assert.Single((await Client(channel).ModelInferAsync(Request(Features(0, 2), raw: false))).Outputs); // the connection is open
        var slow = Post(rest, "/predict?explain=true", Records(Features(100, 300)));
        await Task.Delay(200);
        var stop = stopping.StopAsync();
        await Task.Delay(100);
        Assert.False(slow.IsCompleted, "the explanation finished before the stop");
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await Client(channel).ModelInferAsync(Request(Features(0, 2), raw: false)));
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await slow).Status);
        await stop;
    }

    [Fact]
    public async Task With_an_api_key_only_the_health_calls_go_without_it_in_the_metadata()
    {
        await using var keyed = await server.StartAsync(server.Model, new ServeOptions { Name = "hits", Port = 0, GrpcPort = 0, ApiKey = "s3cret-key" });
        using var channel = Channel(keyed);
        var client = Client(channel);
        using var rest = ServerFixture.ClientOf(keyed);
        var request = Request(Features(0, 3), raw: false);

        var missing = await Assert.ThrowsAsync<RpcException>(async () => await client.ModelInferAsync(request));
        Assert.Equal(StatusCode.Unauthenticated, missing.StatusCode);
        Assert.Equal(Error((await Post(rest, "/v2/models/hits/infer", Infer(Features(0, 3)))).Body), missing.Status.Detail);
        var wrong = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.ModelInferAsync(request, new Metadata { { "authorization", "Bearer other" } }));
        Assert.Equal((StatusCode.Unauthenticated, "the API key is not this server's"), (wrong.StatusCode, wrong.Status.Detail));
        var metadata = await Assert.ThrowsAsync<RpcException>(async () => await client.ServerMetadataAsync(new ServerMetadataRequest()));
        Assert.Equal(StatusCode.Unauthenticated, metadata.StatusCode);

        var expected = Bits(await Rest(Features(0, 3)));
        foreach (var key in new Metadata[] { new() { { "authorization", "Bearer s3cret-key" } }, new() { { "x-api-key", "s3cret-key" } } })
            Assert.Equal(expected, Bits(Values(await client.ModelInferAsync(request, key))));
        Assert.True((await client.ServerLiveAsync(new ServerLiveRequest())).Live);
        Assert.True((await client.ServerReadyAsync(new ServerReadyRequest())).Ready);
    }

    /// <summary>Sends each call with another :authority, as a page's name that its owner points at 127.0.0.1 would.</summary>
    private sealed class Rebinding(string host) : DelegatingHandler(new SocketsHttpHandler())
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            request.Headers.Host = host;
            return base.SendAsync(request, cancellationToken);
        }
    }

    [Fact]
    public async Task A_call_naming_a_host_the_server_does_not_answer_to_is_invalid()
    {
        using var channel = GrpcChannel.ForAddress(server.Server.GrpcAddresses[0], new GrpcChannelOptions { HttpHandler = new Rebinding("attacker.example") });
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await Client(channel).ServerLiveAsync(new ServerLiveRequest()));
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.StartsWith("the Host 'attacker.example' is refused", refused.Status.Detail);
    }

    [Fact]
    public async Task Grpc_and_rest_requests_are_scored_in_the_same_launches_and_each_gets_its_answer_alone()
    {
        var options = new ServeOptions { Name = "hits", Port = 0, GrpcPort = 0, BatchWindow = TimeSpan.FromMilliseconds(200) };
        await using var batching = await server.StartAsync(server.Model, options);
        using var rest = ServerFixture.ClientOf(batching);
        using var channel = Channel(batching);
        var client = Client(channel);
        var sizes = Enumerable.Range(0, 40).Select(i => 1 + i * 5 % 11).ToArray();
        var alone = sizes.Select((rows, i) => Alone(Features(i * 31, rows))).ToArray();
        var queue = batching.Endpoints.Queue;
        (long launches, long requests) = (queue.Launches, queue.ScoredRequests);
        var answers = await Task.WhenAll(sizes.Select(async (rows, i) => i % 2 == 0
            ? Probabilities((await Post(rest, "/v2/models/hits/infer", Infer(Features(i * 31, rows)))).Body)
            : Values(await client.ModelInferAsync(Request(Features(i * 31, rows), raw: i % 4 == 1)))));
        for (int i = 0; i < sizes.Length; i++)
            Assert.Equal(Bits(alone[i]), Bits(answers[i]));
        long used = queue.Launches - launches;
        Assert.Equal(sizes.Length, queue.ScoredRequests - requests); // the gRPC calls went through the REST requests' queue
        Assert.True(used < sizes.Length / 2, $"{sizes.Length} concurrent REST and gRPC requests took {used} launches: the window did not batch them");
    }

    [Fact]
    public async Task Hitgpu_serve_says_where_its_grpc_port_is_and_answers_there()
    {
        var (process, address, output) = await ServeCommandTests.StartServe("--model", server.ModelPath, "--name", "hits", "--grpc-port", "0");
        using (process)
        {
            try
            {
                string line = await ServeCommandTests.Line(output, "gRPC on http://");
                string grpc = line["gRPC on ".Length..line.IndexOf(' ', "gRPC on ".Length)].TrimEnd(',');
                Assert.NotEqual(new Uri(address).Port, new Uri(grpc).Port);
                using var channel = GrpcChannel.ForAddress(grpc);
                var features = Features(7, 4);
                var answer = await Client(channel).ModelInferAsync(Request(features, raw: true));
                Assert.Equal(Bits(await Rest(features)), Bits(Values(answer)));
            }
            finally
            {
                process.Kill();
            }
        }
    }

    /// <summary>A python3 with the grpc and grpc_tools modules (Debian's is /usr/bin/python3; one on PATH may lack them), or null.</summary>
    private static string? PythonWithGrpc()
    {
        foreach (string python in (string[])["/usr/bin/python3", "python3"])
        {
            try
            {
                var start = new ProcessStartInfo(python, ["-c", "import grpc, grpc_tools.protoc"]) { RedirectStandardError = true };
                using var probe = Process.Start(start)!;
                probe.WaitForExit(30_000);
                if (probe.HasExited && probe.ExitCode == 0)
                    return python;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                // not installed
            }
        }
        return null;
    }

    private static async Task<(int Code, string Output, string Error)> Run(string python, string[] arguments, string? input = null)
    {
        var start = new ProcessStartInfo(python, arguments)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.StandardInput.WriteAsync(input ?? "");
        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output, await error);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_python_client_generated_from_the_same_proto_gets_the_rest_answer_bit_for_bit(bool raw)
    {
        string? python = PythonWithGrpc();
        if (python is null && Environment.GetEnvironmentVariable("HITGPU_REQUIRE_GRPC_PYTHON") == "1")
            Assert.Fail("HITGPU_REQUIRE_GRPC_PYTHON=1 but no python3 has the grpc and grpc_tools modules (apt-get install python3-grpcio python3-grpc-tools)");
        Assert.SkipWhen(python is null,
            "no python3 with grpc and grpc_tools (apt-get install python3-grpcio python3-grpc-tools): the Python client test cannot run");

        string stubs = Directory.CreateTempSubdirectory("hitgpu-grpc-python-").FullName;
        try
        {
            string protos = Path.Combine(AppContext.BaseDirectory, "Protos");
            var generated = await Run(python!,
                ["-m", "grpc_tools.protoc", $"-I{protos}", $"--python_out={stubs}", $"--grpc_python_out={stubs}", "open_inference_grpc.proto"]);
            Assert.True(generated.Code == 0, $"grpc_tools.protoc failed: {generated.Error}");

            var features = Features(300, 23);
            var songs = new StringBuilder();
            for (int r = 0; r < 23; r++)
                songs.AppendLine(string.Join(",", features[(r * 15)..((r + 1) * 15)].Select(v => v.ToString("R", CultureInfo.InvariantCulture))));
            string target = new Uri(server.Server.GrpcAddresses[0]).Authority;
            string[] arguments = ["grpc_client.py", "--stubs", stubs, "--target", target, "--model", "hits", "--id", "py-1"];
            if (raw)
                arguments = [.. arguments, "--raw"];
            var called = await Run(python!, arguments, songs.ToString());
            Assert.True(called.Code == 0, $"grpc_client.py failed ({called.Code}): {called.Output} {called.Error}");

            var answer = JsonNode.Parse(called.Output)!;
            string Text(string field) => answer[field]!.GetValue<string>();
            Assert.Equal(("hits", "1", "py-1"), (Text("model_name"), Text("model_version"), Text("id")));
            Assert.Equal(("probability", "FP32"), (Text("name"), Text("datatype")));
            Assert.Equal([23L, 1L], answer["shape"]!.AsArray().Select(d => d!.GetValue<long>()));
            // Python prints each float32 as the shortest double that is it: read back as a double, then narrowed, it is the same float.
            var probabilities = answer["data"]!.AsArray().Select(v => (float)v!.GetValue<double>());
            Assert.Equal(Bits(await Rest(features)), Bits(probabilities));
        }
        finally
        {
            Directory.Delete(stubs, recursive: true);
        }
    }
}

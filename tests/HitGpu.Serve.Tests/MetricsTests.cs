// /metrics on the metrics port, read as Prometheus reads it: after known traffic on a fresh server, each count is
// what the test sent (requests by endpoint and status, songs, batches, queue waits, refusals by reason), the
// gauges follow requests and uploads while they last, the port serves nothing else and asks no API key, and
// the text passes `promtool check metrics` and is scraped by a real Prometheus (Debian's prometheus package:
// without it those two tests say they are skipped, unless HITGPU_REQUIRE_PROMETHEUS=1 (CI) makes that a failure).
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using Inference;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class MetricsTests(ServerFixture server)
{
    private const string InferRoute = "/v2/models/{name}/infer", ModelInferPath = "/inference.GRPCInferenceService/ModelInfer";

    private Task<HitServer> Start(int maxInFlight = 256, string? apiKey = null) => server.StartAsync(server.Model, new ServeOptions
    {
        Name = "hits", Port = 0, GrpcPort = 0, MetricsPort = 0, MaxInFlight = maxInFlight, ApiKey = apiKey, MaxBodyBytes = 256 << 10,
    });

    /// <summary>One sample of the text format: its name, labels and value.</summary>
    private sealed record Sample(string Name, Dictionary<string, string> Labels, double Value);

    private static List<Sample> Parse(string text)
    {
        var samples = new List<Sample>();
        foreach (string line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
                continue;
            int space = line.LastIndexOf(' ');
            string series = line[..space];
            int brace = series.IndexOf('{');
            var labels = new Dictionary<string, string>();
            if (brace >= 0)
                foreach (string pair in series[(brace + 1)..^1].Split("\","))
                    labels[pair[..pair.IndexOf('=')]] = pair[(pair.IndexOf('=') + 2)..].TrimEnd('"');
            samples.Add(new Sample(brace >= 0 ? series[..brace] : series, labels, double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture)));
        }
        return samples;
    }

    /// <summary>The sum of a metric's samples whose labels include these (0 where none has them).</summary>
    private static double Value(List<Sample> samples, string name, params (string Name, string Value)[] labels) =>
        samples.Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Name, out var v) && v == l.Value)).Sum(s => s.Value);

    /// <summary>
    /// The samples once the requests already answered are all counted: a request is counted just after its answer
    /// has gone, so its client can scrape first. Waits until two scrapes 100 ms apart count the same requests
    /// (the scrapes' own aside), 5 s at most; the test then asserts on what they say.
    /// </summary>
    private static async Task<List<Sample>> Settled(HitServer served) => (await SettledScrapes(served)).Samples;

    /// <summary><see cref="Settled"/>, with the number of scrapes it took (the last one's own not yet counted in it).</summary>
    private static async Task<(List<Sample> Samples, int Scrapes)> SettledScrapes(HitServer served)
    {
        static double Answered(List<Sample> samples) =>
            samples.Where(s => s.Name == "hitgpu_requests_total" && s.Labels.GetValueOrDefault("endpoint") != "/metrics").Sum(s => s.Value);
        var samples = Parse(await Scrape(served));
        int scrapes = 1;
        for (; scrapes < 50; scrapes++)
        {
            await Task.Delay(100);
            var next = Parse(await Scrape(served));
            bool same = Answered(next) == Answered(samples);
            samples = next;
            if (same)
                break;
        }
        return (samples, Math.Min(scrapes + 1, 50));
    }

    private static async Task<string> Scrape(HitServer served)
    {
        using var client = new HttpClient();
        using var response = await client.GetAsync(served.MetricsAddresses[0] + "/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadAsStringAsync();
    }

    private static ModelInferRequest GrpcRequest(float[] features, string model = "hits") => new()
    {
        ModelName = model,
        Inputs = { new ModelInferRequest.Types.InferInputTensor
        {
            Name = "features", Datatype = "FP32", Shape = { features.Length / 15, 15 }, Contents = new InferTensorContents { Fp32Contents = { features } },
        } },
    };

    /// <summary>What the tests send a fresh server: its songs, REST and gRPC, good and refused.</summary>
    private static async Task Traffic(HitServer served)
    {
        using var rest = ServerFixture.ClientOf(served);
        using var channel = GrpcChannel.ForAddress(served.GrpcAddresses[0]);
        var grpc = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        foreach (int rows in (int[])[2, 3, 5])
            Assert.Equal(HttpStatusCode.OK, (await Post(rest, "/v2/models/hits/infer", Http.Infer(Features(rows * 10, rows)))).Status);
        Assert.Equal(4, (await grpc.ModelInferAsync(GrpcRequest(Features(0, 4)))).Outputs[0].Contents.Fp32Contents.Count);
        Assert.Equal(HttpStatusCode.OK, (await Post(rest, "/predict?explain=true", Records(Features(7, 2)))).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await Post(rest, "/v2/models/hits/infer", "{\"inputs\": []}")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await Post(rest, "/v2/models/other/infer", Http.Infer(Features(0, 1)))).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await Get(rest, "/nothing/here")).Status);
        var unknown = await Assert.ThrowsAsync<RpcException>(async () => await grpc.ModelInferAsync(GrpcRequest(Features(0, 1), model: "other")));
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
        var large = await Assert.ThrowsAsync<RpcException>(async () => await grpc.ModelInferAsync(GrpcRequest(Features(0, 5000)))); // 300 KB > 256 KiB
        Assert.Equal(StatusCode.ResourceExhausted, large.StatusCode);
    }

    [Fact]
    public async Task The_counts_are_what_the_server_was_sent()
    {
        await using var served = await Start();
        long started = Stopwatch.GetTimestamp();
        await Traffic(served);
        double wall = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var samples = await Settled(served);

        double Requests(string protocol, string endpoint, string status) =>
            Value(samples, "hitgpu_requests_total", ("protocol", protocol), ("endpoint", endpoint), ("status", status));
        Assert.Equal(3, Requests("rest", InferRoute, "200"));
        Assert.Equal(1, Requests("rest", InferRoute, "400"));
        Assert.Equal(1, Requests("rest", InferRoute, "404"));
        Assert.Equal(1, Requests("rest", "/predict", "200"));
        Assert.Equal(1, Requests("rest", "unmatched", "404"));
        Assert.Equal(1, Requests("grpc", ModelInferPath, "OK"));
        Assert.Equal(1, Requests("grpc", ModelInferPath, "NOT_FOUND"));
        Assert.Equal(1, Requests("grpc", ModelInferPath, "RESOURCE_EXHAUSTED"));
        Assert.Equal(1, Value(samples, "hitgpu_request_duration_seconds_count", ("protocol", "rest"), ("endpoint", "/predict")));

        Assert.Equal(2 + 3 + 5 + 4, Value(samples, "hitgpu_scored_songs_total", ("work", "score")));
        Assert.Equal(2, Value(samples, "hitgpu_scored_songs_total", ("work", "explain")));
        var queue = served.Endpoints.Queue;
        Assert.Equal(queue.Launches, Value(samples, "hitgpu_batch_songs_count"));
        Assert.Equal(14, Value(samples, "hitgpu_batch_songs_sum"));
        Assert.Equal(queue.ScoredRequests, Value(samples, "hitgpu_batch_requests_sum"));
        Assert.Equal(4, Value(samples, "hitgpu_queue_wait_seconds_count", ("work", "score")));
        Assert.Equal(4, Value(samples, "hitgpu_scoring_seconds_count", ("work", "score")));
        Assert.Equal(1, Value(samples, "hitgpu_scoring_seconds_count", ("work", "explain")));
        // Every request's wait and scoring fall in a bucket at most its whole time: both within the traffic's.
        Assert.InRange(Value(samples, "hitgpu_queue_wait_seconds_sum") + Value(samples, "hitgpu_scoring_seconds_sum"), 0, wall);

        Assert.Equal(1, Value(samples, "hitgpu_refusals_total", ("reason", "invalid_input")));
        Assert.Equal(2, Value(samples, "hitgpu_refusals_total", ("reason", "unknown_model")));
        Assert.Equal(1, Value(samples, "hitgpu_refusals_total", ("reason", "no_such_path")));
        Assert.Equal(1, Value(samples, "hitgpu_refusals_total", ("reason", "too_large")));
        Assert.Equal(5, Value(samples, "hitgpu_refusals_total"));

        double busy = Value(samples, "hitgpu_scorer_busy_seconds_total");
        Assert.True(busy > 0 && busy <= wall * 2, $"the scorers were busy {busy} s in {wall} s");
        Assert.Equal(0, Value(samples, "hitgpu_requests_in_flight"));
        Assert.Equal(0, Value(samples, "hitgpu_uploads_in_flight"));
        Assert.True(Value(samples, "process_working_set_bytes") > 0);
    }

    [Fact]
    public async Task The_metrics_port_serves_metrics_only_without_the_key_and_the_rest_port_no_metrics()
    {
        await using var served = await Start(apiKey: "key-of-the-test");
        Assert.Contains("hitgpu_requests_total", await Scrape(served)); // no key sent
        using var client = new HttpClient();
        var other = await Get(client, served.MetricsAddresses[0] + "/v2/models/hits");
        Assert.Equal(HttpStatusCode.NotFound, other.Status);
        Assert.StartsWith("this port serves GET /metrics only", Error(other.Body));
        using var rest = ServerFixture.ClientOf(served);
        Assert.Equal(HttpStatusCode.Unauthorized, (await Get(rest, "/v2/models/hits")).Status);
        rest.DefaultRequestHeaders.Add("X-Api-Key", "key-of-the-test");
        Assert.Equal(HttpStatusCode.NotFound, (await Get(rest, "/metrics")).Status);
        using var rebound = new HttpRequestMessage(HttpMethod.Get, served.MetricsAddresses[0] + "/metrics");
        rebound.Headers.Host = "attacker.example"; // the allowed hosts hold here too
        using var refused = await client.SendAsync(rebound);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var (samples, scrapes) = await SettledScrapes(served);
        Assert.Equal(1, Value(samples, "hitgpu_refusals_total", ("reason", "unauthenticated")));
        Assert.Equal(1, Value(samples, "hitgpu_refusals_total", ("reason", "host_not_allowed")));
        Assert.Equal(2, Value(samples, "hitgpu_refusals_total", ("reason", "no_such_path"))); // the metrics port's other path, the REST port's /metrics
        // A scrape is counted once answered: the first one and every one Settled made before its last, not the last.
        Assert.Equal(scrapes, Value(samples, "hitgpu_requests_total", ("endpoint", "/metrics"), ("status", "200")));
    }

    [Fact]
    public async Task Hitgpu_serve_says_where_its_metrics_are()
    {
        var (process, _, output) = await ServeCommandTests.StartServe("--model", server.ModelPath, "--name", "hits", "--metrics-port", "0");
        using (process)
        {
            try
            {
                string line = await ServeCommandTests.Line(output, "metrics on http://");
                string address = line["metrics on ".Length..line.IndexOf(' ', "metrics on ".Length)];
                using var client = new HttpClient();
                Assert.Contains("# TYPE hitgpu_requests_total counter", await client.GetStringAsync(address));
            }
            finally
            {
                process.Kill();
            }
        }
    }

    /// <summary>A body that sends half, then waits until told to send the rest.</summary>
    private sealed class HeldBody(byte[] bytes, Task release) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(bytes.AsMemory(0, bytes.Length / 2));
            await stream.FlushAsync();
            await release;
            await stream.WriteAsync(bytes.AsMemory(bytes.Length / 2));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = bytes.Length;
            return true;
        }
    }

    private static async Task<double> WaitFor(HitServer served, string name, double expected)
    {
        double value = double.NaN;
        for (int i = 0; i < 100 && value != expected; i++, await Task.Delay(50))
            value = Value(Parse(await Scrape(served)), name);
        return value;
    }

    [Fact]
    public async Task Requests_and_uploads_in_flight_are_gauged_while_they_last_and_a_busy_refusal_is_counted()
    {
        await using var served = await Start(maxInFlight: 1);
        using var rest = ServerFixture.ClientOf(served);
        var slow = Post(rest, "/predict?explain=true", Records(Features(100, 300))); // explanations of 300 songs take a while
        Assert.Equal(1, await WaitFor(served, "hitgpu_requests_in_flight", 1));
        Assert.False(slow.IsCompleted, "the explanation finished before the gauge was read");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await Post(rest, "/v2/models/hits/infer", Http.Infer(Features(0, 1)))).Status);
        Assert.Equal(HttpStatusCode.OK, (await slow).Status);
        Assert.Equal(0, await WaitFor(served, "hitgpu_requests_in_flight", 0));
        Assert.Equal(1, Value(await Settled(served), "hitgpu_refusals_total", ("reason", "busy")));

        var release = new TaskCompletionSource();
        using var content = new HeldBody(System.Text.Encoding.UTF8.GetBytes(Http.Infer(Features(0, 3))), release.Task);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        var upload = rest.PostAsync("/v2/models/hits/infer", content);
        Assert.Equal(1, await WaitFor(served, "hitgpu_uploads_in_flight", 1));
        release.SetResult();
        using (var answer = await upload)
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(0, await WaitFor(served, "hitgpu_uploads_in_flight", 0));
    }

    /// <summary>Debian's /usr/bin/TOOL, or null; with HITGPU_REQUIRE_PROMETHEUS=1 its absence fails the test.</summary>
    private static string? PrometheusTool(string tool)
    {
        string path = $"/usr/bin/{tool}";
        bool present = File.Exists(path);
        if (!present && Environment.GetEnvironmentVariable("HITGPU_REQUIRE_PROMETHEUS") == "1")
            Assert.Fail($"HITGPU_REQUIRE_PROMETHEUS=1 but {path} is missing (apt-get install prometheus)");
        Assert.SkipWhen(!present, $"no {path} (apt-get install prometheus): the metrics cannot be checked by Prometheus's own tools");
        return path;
    }

    [Fact]
    public async Task Promtool_finds_nothing_to_lint_in_the_metrics()
    {
        string promtool = PrometheusTool("promtool")!;
        await using var served = await Start();
        await Traffic(served);
        string text = await Scrape(served);
        var start = new ProcessStartInfo(promtool, ["check", "metrics"]) 
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var check = Process.Start(start)!;
        var output = check.StandardOutput.ReadToEndAsync();
        var error = check.StandardError.ReadToEndAsync();
        await check.StandardInput.WriteAsync(text);
        check.StandardInput.Close();
        await check.WaitForExitAsync();
        string said = (await output + await error).Trim();
        Assert.True(check.ExitCode == 0 && said.Length == 0, $"promtool check metrics: exit {check.ExitCode}: {said}");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public async Task A_real_prometheus_scrapes_the_songs_scored()
    {
        string prometheus = PrometheusTool("prometheus")!;
        await using var served = await Start();
        await Traffic(served);
        string folder = Directory.CreateTempSubdirectory("hitgpu-prometheus-").FullName;
        Process? process = null;
        try
        {
            File.WriteAllText(Path.Combine(folder, "prometheus.yml"), $"""
                global: {"{"} scrape_interval: 1s, evaluation_interval: 1s {"}"}
                scrape_configs:
                  - job_name: hitgpu
                    static_configs: [{"{"} targets: ["{new Uri(served.MetricsAddresses[0]).Authority}"] {"}"}]
                """);
            int port = FreePort();
            string[] arguments = [$"--config.file={Path.Combine(folder, "prometheus.yml")}", $"--storage.tsdb.path={Path.Combine(folder, "data")}",
                $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"];
            var start = new ProcessStartInfo(prometheus, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
            process = Process.Start(start)!;
            var said = process.StandardError.ReadToEndAsync();
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            string query = Uri.EscapeDataString("hitgpu_scored_songs_total{job=\"hitgpu\",work=\"score\"}");
            double? scraped = null;
            for (var waited = Stopwatch.StartNew(); scraped is null && waited.Elapsed < TimeSpan.FromSeconds(30) && !process.HasExited; await Task.Delay(250))
            {
                try
                {
                    var answer = JsonNode.Parse(await client.GetStringAsync($"/api/v1/query?query={query}"))!;
                    if (answer["data"]!["result"]!.AsArray() is [var series, ..])
                        scraped = double.Parse(series!["value"]![1]!.GetValue<string>(), CultureInfo.InvariantCulture);
                }
                catch (HttpRequestException)
                {
                    // not listening yet
                }
            }
            Assert.True(scraped is not null, $"Prometheus never had hitgpu_scored_songs_total: {(process.HasExited ? await said : "still running")}");
            Assert.Equal(14, scraped);
        }
        finally
        {
            if (process is { HasExited: false })
                process.Kill();
            process?.WaitForExit();
            process?.Dispose();
            Directory.Delete(folder, recursive: true);
        }
    }
}

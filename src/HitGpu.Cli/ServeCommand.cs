// hitgpu serve: the model behind HTTP (HitGpu.Serve): KServe's Open Inference Protocol, /predict for CSV and
// JSON records, and a page for people at /. Runs until Ctrl+C or SIGTERM, then drains the requests in flight.
using System.CommandLine;
using System.Globalization;
using HitGpu.Nn;
using HitGpu.Serve;

namespace HitGpu.Cli;

public static class ServeCommand
{
    /// <summary>Where the API key may come from instead of --api-key: a flag shows in the process list, the environment does not.</summary>
    public const string ApiKeyVariable = "HITGPU_API_KEY";

    public static Command Create(TextWriter output)
    {
        var model = HitGpuCli.PathOption("--model", "model file written by hitgpu train --out", required: true);
        var name = new Option<string?>("--name")
        {
            Description = "the model's name in the protocol's paths (/v2/models/NAME); default: the file's name without its extension",
        };
        var host = new Option<string>("--host") { Description = "address to listen on (0.0.0.0: every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var allowedHosts = new Option<string?>("--allowed-hosts")
        {
            Description = "host names requests may give, comma separated ('*': any; default: loopback names when listening on a loopback address, else any)",
        };
        var apiKey = new Option<string?>("--api-key")
        {
            Description = "a key every request but the health probes' must send (Authorization: Bearer KEY or X-Api-Key: KEY); " +
                $"default: ${ApiKeyVariable}, else none",
        };
        var port = new Option<int>("--port") { Description = "port to listen on (0: any free port)", DefaultValueFactory = _ => 8080 };
        var grpcPort = new Option<int?>("--grpc-port")
        {
            Description = "port of the protocol's gRPC service (HTTP/2 only; 0: any free port; default: none)",
        };
        var metricsPort = new Option<int?>("--metrics-port")
        {
            Description = "port that serves /metrics for Prometheus, without the API key (0: any free port; default: none)",
        };
        var window = new Option<double?>("--batch-window-ms")
        {
            Description = "how long a request waits for others to be scored in the same launch (0: no waiting; default: 2 on a GPU, 0 on the CPU)",
        };
        var maxRows = new Option<int>("--max-rows") { Description = "most songs one request may send (413 beyond)", DefaultValueFactory = _ => 10_000 };
        var maxBody = new Option<double>("--max-body-mb") { Description = "largest request body in MiB (413 beyond)", DefaultValueFactory = _ => 16 };
        var inFlight = new Option<int>("--max-in-flight")
        {
            Description = "most requests with songs taken at once (503 beyond)", DefaultValueFactory = _ => 256,
        };
        var uploads = new Option<int>("--max-uploads")
        {
            Description = "most request bodies waited for at once (503 beyond; a body that comes within a second needs none)", DefaultValueFactory = _ => 64,
        };
        var minRate = new Option<double>("--min-body-rate")
        {
            Description = "slowest a body may arrive, bytes/s after a 5 s grace (408 below)", DefaultValueFactory = _ => 1024,
        };
        var bodyTimeout = new Option<double>("--body-timeout-s")
        {
            Description = "longest a whole body may take to arrive, in seconds (408 after)", DefaultValueFactory = _ => 60,
        };
        var maxExplain = new Option<int>("--max-explain-songs")
        {
            Description = "most songs one ?explain=true request may send (413 beyond)", DefaultValueFactory = _ => 1000,
        };
        var drain = new Option<double>("--drain-s")
        {
            Description = "how long a stop waits for the requests in flight, in seconds (explanations: half of it)", DefaultValueFactory = _ => 30,
        };
        var steps = new Option<int>("--explain-steps")
        {
            Description = "points on each song's integrated-gradients path for ?explain=true", DefaultValueFactory = _ => 64,
        };
        var quiet = new Option<bool>("--quiet") { Description = "no line per request" };
        var accelerator = HitGpuCli.AcceleratorOption();
        var command = new Command("serve", "Serve a saved model over HTTP: KServe v2 inference, CSV/JSON /predict, and a page at /")
        {
            model, name, host, allowedHosts, apiKey, port, grpcPort, metricsPort, window, maxRows, maxBody, inFlight, uploads, minRate, bodyTimeout,
            maxExplain, drain, steps, quiet, accelerator,
        };
        command.SetAction(parsed =>
        {
            string path = parsed.GetValue(model)!;
            // A value no TimeSpan or byte count can hold (NaN, infinity, 1e300) is refused here, as the user gave it;
            // every other goes on to ServeOptions.Validate, whose words name the range.
            double? ms = parsed.GetValue(window) is { } w ? Convertible(w, "--batch-window-ms", 1e9) : null;
            double mb = Convertible(parsed.GetValue(maxBody), "--max-body-mb", 1 << 20);
            double bodySeconds = Convertible(parsed.GetValue(bodyTimeout), "--body-timeout-s", 1e6);
            double drainSeconds = Convertible(parsed.GetValue(drain), "--drain-s", 1e6);
            var options = new ServeOptions
            {
                Name = parsed.GetValue(name) ?? Path.GetFileNameWithoutExtension(path),
                ModelFile = path,
                Host = parsed.GetValue(host)!,
                AllowedHosts = parsed.GetValue(allowedHosts)?.Split(',', StringSplitOptions.TrimEntries),
                ApiKey = parsed.GetValue(apiKey) ?? Environment.GetEnvironmentVariable(ApiKeyVariable),
                Port = parsed.GetValue(port),
                GrpcPort = parsed.GetValue(grpcPort),
                MetricsPort = parsed.GetValue(metricsPort),
                BatchWindow = ms is { } given ? TimeSpan.FromMilliseconds(given) : null,
                MaxRows = parsed.GetValue(maxRows),
                MaxBodyBytes = (long)(mb * (1 << 20)),
                MaxInFlight = parsed.GetValue(inFlight),
                MaxUploads = parsed.GetValue(uploads),
                MinBodyBytesPerSecond = parsed.GetValue(minRate),
                BodyTimeout = TimeSpan.FromSeconds(bodySeconds),
                ExplainSteps = parsed.GetValue(steps),
                MaxExplainSongs = parsed.GetValue(maxExplain),
                DrainTimeout = TimeSpan.FromSeconds(drainSeconds),
                RequestLog = parsed.GetValue(quiet) ? null : output,
                InHostWords = HitGpuCli.InFlags,
            };
            options.Validate(); // before the model loads: a bad option is said at once
            var hitModel = ModelFile.Load(path);
            using var device = HitGpuCli.OpenDevice(parsed.GetValue(accelerator)!);
            var server = HitServer.StartAsync(hitModel, device, options).GetAwaiter().GetResult();
            try
            {
                output.WriteLine($"listening on {string.Join(", ", server.Addresses)} (model {options.Name}: the page at /, CSV or JSON at /predict, " +
                    $"KServe v2 at /v2/models/{options.Name}/infer; Ctrl+C stops)");
                if (server.GrpcAddresses.Count > 0)
                    output.WriteLine($"gRPC on {string.Join(", ", server.GrpcAddresses)} (the protocol's GRPCInferenceService, HTTP/2 only)");
                if (server.MetricsAddresses.Count > 0)
                    output.WriteLine($"metrics on {string.Join(", ", server.MetricsAddresses.Select(a => a + "/metrics"))} (Prometheus, no API key)");
                output.Flush();
                server.WaitForShutdownAsync().GetAwaiter().GetResult();
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            output.WriteLine($"stopped after {server.Endpoints.Queue.ScoredRequests} scoring requests in {server.Endpoints.Queue.Launches} launches");
            return HitGpuCli.Ok;
        });
        return command;
    }

    /// <summary>A flag's number, refused where it is not one or is too large to convert (<paramref name="limit"/>).</summary>
    private static double Convertible(double value, string flag, double limit) => double.IsFinite(value) && Math.Abs(value) <= limit ? value
        : throw new ArgumentException($"{flag} must be a number within its range, got {value.ToString(CultureInfo.InvariantCulture)}");
}

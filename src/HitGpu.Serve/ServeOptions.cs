// What a server is told: where it listens, how long it waits to batch requests, and the limits it holds
// every request to. The defaults are those of `hitgpu serve`.
using System.Globalization;
using HitGpu.Kernels;

namespace HitGpu.Serve;

public sealed record ServeOptions
{
    /// <summary>The model's name in the protocol's paths (/v2/models/{name}); letters, digits, '.', '_' and '-'.</summary>
    public required string Name { get; init; }

    /// <summary>Where the model was read from (shown on the page); null for a model built in memory.</summary>
    public string? ModelFile { get; init; }

    public string Host { get; init; } = "127.0.0.1";

    /// <summary>
    /// The names a request's Host header may give ("*": any). Null: the loopback names (localhost, 127.x.x.x,
    /// [::1]) when <see cref="Host"/> is a loopback address, any otherwise. A page whose name its owner points
    /// at 127.0.0.1 (DNS rebinding) reaches a loopback server from the user's browser, with the page's own name
    /// in Host: this refuses it.
    /// </summary>
    public IReadOnlyList<string>? AllowedHosts { get; init; }

    /// <summary>
    /// When set, every request but the health probes' (/v2/health/live, /v2/health/ready) must carry it, as
    /// "Authorization: Bearer KEY" or "X-Api-Key: KEY" (401 without). Null: no key.
    /// </summary>
    public string? ApiKey { get; init; }

    /// <summary>0 picks a free port (tests); the address taken is in <see cref="HitServer.Addresses"/>.</summary>
    public int Port { get; init; } = 8080;

    /// <summary>
    /// The port of the protocol's gRPC service (HTTP/2 only, on <see cref="Host"/>, beside the REST port); null:
    /// none; 0 picks a free one (in <see cref="HitServer.GrpcAddresses"/>).
    /// </summary>
    public int? GrpcPort { get; init; }

    /// <summary>
    /// The port that serves /metrics (Prometheus's text format) and nothing else, on <see cref="Host"/>, without
    /// the API key (as Triton's metrics port: a scraper carries none); null: none; 0 picks a free one.
    /// </summary>
    public int? MetricsPort { get; init; }

    /// <summary>
    /// How long the scorer waits, after a request arrives, for others to score in the same launch (Triton's
    /// max_queue_delay). Zero: each request is scored as it comes (requests already waiting still share a launch).
    /// Null: the plan's (<see cref="DevicePlan.ServingBatchWindow"/>).
    /// </summary>
    public TimeSpan? BatchWindow { get; init; }

    /// <summary>The most songs one launch scores; a batch closes early when it reaches them.</summary>
    public int MaxBatchRows { get; init; } = 4096;

    /// <summary>The most songs one request may send (413 beyond).</summary>
    public int MaxRows { get; init; } = 10_000;

    /// <summary>The largest request body, in bytes (413 beyond).</summary>
    public long MaxBodyBytes { get; init; } = 16L << 20;

    /// <summary>
    /// The most requests with songs (inference, /predict) parsed and scored at once; beyond, 503 at once. A
    /// request takes its slot once its body is read (<see cref="MaxUploads"/> bounds those being read).
    /// </summary>
    public int MaxInFlight { get; init; } = 256;

    /// <summary>
    /// The most request bodies waited for at once (503 beyond): a body still arriving holds one of these, never
    /// an in-flight slot. A body that comes within a second of its handler's start needs none (<see cref="Uploads.Patience"/>).
    /// </summary>
    public int MaxUploads { get; init; } = 64;

    /// <summary>
    /// The slowest a body may arrive, in bytes per second averaged since its first byte was asked for, after
    /// <see cref="BodyRateGrace"/> (Kestrel's MinRequestBodyDataRate: 408 below it). A trickle falls under it.
    /// </summary>
    public double MinBodyBytesPerSecond { get; init; } = 1024;

    public TimeSpan BodyRateGrace { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a whole body may take to arrive (408 after): a client that keeps above the rate still ends.</summary>
    public TimeSpan BodyTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Points on each song's integrated-gradients path for ?explain=true, as `hitgpu explain --steps`.</summary>
    public int ExplainSteps { get; init; } = 64;

    /// <summary>
    /// The most songs one ?explain=true request may send (413 beyond): 1,000 took 4.5 s on two shared CPU cores
    /// (docs/SERVING.md), well within the half of <see cref="DrainTimeout"/> a stop gives explanations.
    /// </summary>
    public int MaxExplainSongs { get; init; } = 1000;

    /// <summary>
    /// How long a stop waits for the requests in flight before it closes their connections; explanations still
    /// running at half of it are cancelled (503), so that their answers come within it.
    /// </summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>One line per request goes here (null: none).</summary>
    public TextWriter? RequestLog { get; init; }

    /// <summary>
    /// Puts a message that names these options (ServeOptions.MaxRows, ...) in the host's words: every refusal a
    /// client is answered with passes it (HitEndpoints.Refusal), and the metrics' help. The default keeps the
    /// library's names; `hitgpu serve` gives HitGpuCli.InFlags, so that its clients read its flags.
    /// </summary>
    public Func<string, string> InHostWords { get; init; } = message => message;

    /// <summary>
    /// Refuses options no server could run with, in one line that names the property as this library calls it
    /// (ServeOptions.Port, ...): a front end shows its own names for them (the CLI its flags, HitGpuCli.InFlags).
    /// </summary>
    public void Validate()
    {
        if (Name.Length == 0 || !Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            throw new ArgumentException($"{Named(nameof(Name))}: '{Name}' cannot be a model name in a URL path: use letters, digits, '.', '_' and '-'");
        if (AllowedHosts is { Count: 0 })
            throw new ArgumentException($"{Named(nameof(AllowedHosts))} names no host: no request could be answered ('*' allows any)");
        if (AllowedHosts?.FirstOrDefault(host => host.Length == 0 || host.Any(c => char.IsWhiteSpace(c) || c is '/' or ',')
            || (host.Contains(':') && !host.StartsWith('['))) is { } bad)
            throw new
                ArgumentException($"{Named(nameof(AllowedHosts))}: '{bad}' cannot be a host name: give names or addresses without a port ([::1] " +
                    $"for IPv6), or '*' for any");
        if (ApiKey is { } key && (key.Length == 0 || key.Any(c => c is <= ' ' or > '~'))) // the key itself is never said
            throw new ArgumentException($"{Named(nameof(ApiKey))} must be printable ASCII without spaces (it travels in a header), and not empty");
        if (Port is < 0 or > 65535)
            throw new ArgumentException($"{Named(nameof(Port))} must be from 0 to 65535, got {Port}");
        if (GrpcPort is < 0 or > 65535)
            throw new ArgumentException($"{Named(nameof(GrpcPort))} must be from 0 to 65535, got {GrpcPort}");
        if (GrpcPort is { } grpc and > 0 && grpc == Port)
            throw new ArgumentException($"{Named(nameof(GrpcPort))} must differ from {Named(nameof(Port))} (gRPC has its own HTTP/2 port), both are {Port}");
        if (MetricsPort is < 0 or > 65535)
            throw new ArgumentException($"{Named(nameof(MetricsPort))} must be from 0 to 65535, got {MetricsPort}");
        if (MetricsPort is { } metrics and > 0 && (metrics == Port || metrics == GrpcPort))
            throw new ArgumentException($"{Named(nameof(MetricsPort))} must differ from {Named(nameof(Port))} and {Named(nameof(GrpcPort))} " +
                $"(metrics have their own port), " +
                $"got {metrics} twice");
        if (BatchWindow is { } window && (window < TimeSpan.Zero || window > TimeSpan.FromSeconds(1)))
            throw new ArgumentException($"{Named(nameof(BatchWindow))} must be from 0 to 1000 ms, got " +
                $"{window.TotalMilliseconds.ToString(CultureInfo.InvariantCulture)} ms");
        if (MaxRows < 1)
            throw new ArgumentException($"{Named(nameof(MaxRows))} must be at least 1, got {MaxRows}");
        if (MaxBodyBytes is < 1024 or > 1L << 30) // a body is read into one array: 1 GiB keeps far from its 2 GiB
            throw new
                ArgumentException($"{Named(nameof(MaxBodyBytes))} must be from 1 KiB to 1 GiB, got " +
                    $"{(MaxBodyBytes / (double)(1 << 20)).ToString(CultureInfo.InvariantCulture)} MiB");
        if (MaxInFlight < 1)
            throw new ArgumentException($"{Named(nameof(MaxInFlight))} must be at least 1, got {MaxInFlight}");
        if (MaxUploads < 1)
            throw new ArgumentException($"{Named(nameof(MaxUploads))} must be at least 1, got {MaxUploads}");
        if (!(MinBodyBytesPerSecond is >= 1 and <= 1e9))
            throw new ArgumentException($"{Named(nameof(MinBodyBytesPerSecond))} must be from 1 to 1e9 bytes/s, got " +
                $"{MinBodyBytesPerSecond.ToString(CultureInfo.InvariantCulture)}");
        if (BodyRateGrace < TimeSpan.FromSeconds(1))
            throw new ArgumentException("the body rate's grace must be at least 1 s (Kestrel checks the rate once a second)");
        if (BodyTimeout < TimeSpan.FromSeconds(1) || BodyTimeout > TimeSpan.FromHours(1))
            throw new ArgumentException($"{Named(nameof(BodyTimeout))} must be from 1 to 3600 s, got " +
                $"{BodyTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s");
        if (MaxBatchRows < 1)
            throw new ArgumentException($"the batch must hold at least one song, got {MaxBatchRows}");
        if (MaxExplainSongs < 1)
            throw new ArgumentException($"{Named(nameof(MaxExplainSongs))} must be at least 1, got {MaxExplainSongs}");
        if (DrainTimeout < TimeSpan.FromSeconds(1) || DrainTimeout > TimeSpan.FromHours(1))
            throw new ArgumentException($"{Named(nameof(DrainTimeout))} must be from 1 to 3600 s, got " +
                $"{DrainTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s");
        if (ExplainSteps < 1)
            throw new ArgumentException($"{Named(nameof(ExplainSteps))} must be at least 1, got {ExplainSteps}");
    }

    /// <summary>A property as this library's messages name it.</summary>
    internal static string Named(string property) => $"{nameof(ServeOptions)}.{property}";
}

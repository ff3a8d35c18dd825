// What a server counts, for Prometheus (prometheus-net, in a registry of the server's own: two servers in one
// process count apart): requests by endpoint and status, songs scored, each request's queue wait and scoring
// time, the batches' sizes, requests and uploads in flight, refusals by reason, the scorers' busy time, and
// the process's CPU and memory. HitServer serves them at /metrics on ServeOptions.MetricsPort; the names,
// types and labels are listed in docs/SERVING.md ("Metrics"), which this file and that list must agree with.
using System.Diagnostics;
using Grpc.Core;
using HitGpu.Nn;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Prometheus;

namespace HitGpu.Serve;

public sealed class ServeMetrics
{
    /// <summary>Where a refusal leaves its reason, for the request's count (<see cref="Refused(HttpContext, string)"/>).</summary>
    private const string ReasonItem = "hitgpu.refusal";

    /// <summary>Marks a scrape of /metrics (served by a branch of the pipeline, not by a route), for its endpoint label.</summary>
    private const string ScrapeItem = "hitgpu.scrape";

    internal static void Scrape(HttpContext context) => context.Items[ScrapeItem] = true;

    public CollectorRegistry Registry { get; } = Prometheus.Metrics.NewCustomRegistry();

    private readonly Counter requests, songs, refusals, busy;
    private readonly Histogram duration, queueWait, scoring, batchSongs, batchRequests;
    private readonly Gauge inFlight, uploads;

    /// <summary>A request holding a scoring slot (at most ServeOptions.MaxInFlight) until disposed.</summary>
    internal IDisposable InFlight() => inFlight.TrackInProgress();

    /// <summary>A REST body being read until disposed.</summary>
    internal IDisposable Upload() => uploads.TrackInProgress();

    /// <param name="inHostWords">Puts the help's option names in the host's words (<see cref="ServeOptions.InHostWords"/>).</param>
    public ServeMetrics(Func<string, string>? inHostWords = null)
    {
        inHostWords ??= help => help;
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        // From 0.1 ms to 13 s, doubling: a one-song CPU launch takes about a millisecond, a large explanation seconds.
        double[] seconds = Histogram.ExponentialBuckets(0.0001, 2, 18);
        requests = factory.CreateCounter("hitgpu_requests_total", "Requests answered, by protocol, endpoint (its route) and status (HTTP, or gRPC's).",
            "protocol", "endpoint", "status");
        duration = factory.CreateHistogram("hitgpu_request_duration_seconds", "Time from a request's arrival to its answer, by protocol and endpoint.",
            new HistogramConfiguration { LabelNames = ["protocol", "endpoint"], Buckets = seconds });
        songs = factory.CreateCounter("hitgpu_scored_songs_total", "Songs scored (work=score) or explained (work=explain).", "work");
        queueWait = factory.CreateHistogram("hitgpu_queue_wait_seconds", "Time a request's songs waited in the queue for a scorer, by work (score, explain).",
            new HistogramConfiguration { LabelNames = ["work"], Buckets = seconds });
        scoring = factory.CreateHistogram("hitgpu_scoring_seconds", "Time a scorer took over a request's songs (its whole launch), by work (score, explain).",
            new HistogramConfiguration { LabelNames = ["work"], Buckets = seconds });
        batchSongs = factory.CreateHistogram("hitgpu_batch_songs", "Songs per scoring launch (dynamic batching).",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(1, 2, 13) });
        batchRequests = factory.CreateHistogram("hitgpu_batch_requests", "Requests per scoring launch (dynamic batching).",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(1, 2, 9) });
        inFlight = factory.CreateGauge("hitgpu_requests_in_flight",
            inHostWords($"Requests with songs holding a scoring slot now (at most {ServeOptions.Named(nameof(ServeOptions.MaxInFlight))})."));
        uploads = factory.CreateGauge("hitgpu_uploads_in_flight", "REST request bodies being read now.");
        refusals = factory.CreateCounter("hitgpu_refusals_total", "Requests refused, by reason.", "reason");
        busy = factory.CreateCounter("hitgpu_scorer_busy_seconds_total", "Time each scorer spent scoring or explaining.", "scorer");
        DotNetStats.Register(Registry); // process_cpu_seconds_total, process_working_set_bytes, ...
    }

    /// <summary>One scoring launch of a batch: its songs, and each request's wait (from its queueing to the launch) and scoring time.</summary>
    internal void Launched(int scorer, int rows, IReadOnlyList<long> queued, long start, long end)
    {
        double launch = Stopwatch.GetElapsedTime(start, end).TotalSeconds;
        songs.WithLabels("score").Inc(rows);
        batchSongs.Observe(rows);
        batchRequests.Observe(queued.Count);
        foreach (long at in queued)
        {
            queueWait.WithLabels("score").Observe(Stopwatch.GetElapsedTime(at, start).TotalSeconds);
            scoring.WithLabels("score").Observe(launch);
        }
        busy.WithLabels(Scorer(scorer)).Inc(launch);
    }

    /// <summary>One explanation: its songs, its wait and its time.</summary>
    internal void Explained(int scorer, int rows, long queued, long start, long end)
    {
        double took = Stopwatch.GetElapsedTime(start, end).TotalSeconds;
        songs.WithLabels("explain").Inc(rows);
        queueWait.WithLabels("explain").Observe(Stopwatch.GetElapsedTime(queued, start).TotalSeconds);
        scoring.WithLabels("explain").Observe(took);
        busy.WithLabels(Scorer(scorer)).Inc(took);
    }

    private static string Scorer(int index) => index.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Marks a request refused for this reason; <see cref="Answered"/> counts it once.</summary>
    internal static void Refused(HttpContext context, string reason) => context.Items[ReasonItem] = reason;

    /// <summary>Marks a request refused for what its handler threw (<paramref name="status"/>: <see cref="HitEndpoints.Refusal"/>'s).</summary>
    internal static void Refused(HttpContext context, Exception e, int status) => Refused(context, e switch
    {
        ScoringQueue.StoppingException => "stopping",
        InputException => "invalid_input",
        BadHttpRequestException => status == Microsoft.AspNetCore.Http.StatusCodes.Status408RequestTimeout ? "body_too_slow" : "bad_http",
        RequestRefusedException => status switch
        {
            StatusCodes.NotFound => "unknown_model",
            StatusCodes.TooLarge => "too_large",
            StatusCodes.UnsupportedType => "unsupported_type",
            StatusCodes.Unavailable => "busy",
            _ => $"http_{status}",
        },
        _ => "internal",
    });

    /// <summary>
    /// Counts an answered request: by its endpoint (its route's pattern, or "unmatched") and status, its time, and
    /// its refusal's reason if it was refused: the reason its refusal gave, or, for what the pipeline refused
    /// itself (no such path, another method, a gRPC message over the limit), one from its status.
    /// </summary>
    public void Answered(HttpContext context, TimeSpan elapsed)
    {
        string endpoint = context.Items.ContainsKey(ScrapeItem) ? "/metrics" : (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
        var grpc = GrpcInference.AnsweredStatus(context);
        string protocol = grpc is null ? "rest" : "grpc";
        int status = context.Response.StatusCode;
        requests.WithLabels(protocol, endpoint, grpc is { } code ? Name(code) : status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        duration.WithLabels(protocol, endpoint).Observe(elapsed.TotalSeconds);
        string? reason = context.Items.TryGetValue(ReasonItem, out var given) ? (string)given!
            : grpc switch
            {
                null => status switch
                {
                    StatusCodes.NotFound => "no_such_path",
                    StatusCodes.NotAllowed => "method_not_allowed",
                    >= 400 => $"http_{status}",
                    _ => null,
                },
                StatusCode.OK or StatusCode.Cancelled => null, // cancelled: the client went away
                StatusCode.ResourceExhausted => "too_large",
                StatusCode.Unimplemented => "no_such_path",
                _ => $"grpc_{Name(grpc.Value).ToLowerInvariant()}",
            };
        if (reason is not null)
            refusals.WithLabels(reason).Inc();
    }

    /// <summary>A gRPC status as the protocol names it (NOT_FOUND).</summary>
    private static string Name(StatusCode code) =>
        code == StatusCode.OK ? "OK" : string.Concat(code.ToString().Select((c, i) => i > 0 && char.IsUpper(c) ? $"_{c}" : $"{char.ToUpperInvariant(c)}"));
}

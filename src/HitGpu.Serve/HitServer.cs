// `hitgpu serve`: the model's endpoints on Kestrel, with what a standalone server adds: one log line per
// request (method, path, songs, status, milliseconds; what failed, for a 500; Kestrel's refusals before the
// app too), a JSON 404 for unknown paths and 405 for other methods, and a stop (Ctrl+C, SIGTERM, StopAsync) that takes no new connections, lets the
// requests in flight
// finish (up to DrainTimeout), then scores what was queued and frees the device buffers.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;
using HitGpu.Kernels;
using HitGpu.Nn;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace HitGpu.Serve;

public sealed class HitServer : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly HitEndpoints endpoints;
    private readonly RequestLog? log;

    private readonly Listening listening;

    private HitServer(WebApplication app, HitEndpoints endpoints, RequestLog? log, Listening listening) =>
        (this.app, this.endpoints, this.log, this.listening) = (app, endpoints, log, listening);

    /// <summary>The REST endpoints' addresses (with the port Kestrel took when asked for port 0).</summary>
    public IReadOnlyList<string> Addresses => listening.Of(listening.Rest);

    /// <summary>The gRPC service's addresses (HTTP/2 only); none without <see cref="ServeOptions.GrpcPort"/>.</summary>
    public IReadOnlyList<string> GrpcAddresses => listening.Of(listening.Grpc);

    /// <summary>The metrics port's addresses (GET /metrics); none without <see cref="ServeOptions.MetricsPort"/>.</summary>
    public IReadOnlyList<string> MetricsAddresses => listening.Of(listening.Metrics);

    public HitEndpoints Endpoints => endpoints;

    /// <summary>Starts serving; returns once Kestrel listens (a port in use fails here, as an IOException).</summary>
    public static async Task<HitServer> StartAsync(HitModel model, ComputeDevice device, ServeOptions options)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders(); // the request log below is the server's only output
        var log = options.RequestLog is { } writer ? new RequestLog(writer) : null;
        if (log is not null)
        {
            // Kestrel refuses some requests before the app sees them (a bad request line, 414, 431, a header
            // timeout's 408): it says so only to its bad-request logger, at Debug, and the request log takes it.
            builder.Logging.AddProvider(new KestrelRefusals(log));
            builder.Logging.AddFilter<KestrelRefusals>(KestrelRefusals.Category, LogLevel.Debug);
        }
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.DrainTimeout);
        var endpoints = new HitEndpoints(model, device, options);
        builder.Services.AddSingleton(endpoints);
        // A gRPC message is held whole before the call runs: the body limit holds it (RESOURCE_EXHAUSTED beyond).
        builder.Services.AddGrpc(grpc => grpc.MaxReceiveMessageSize = (int)options.MaxBodyBytes);
        var listening = new Listening();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // Each port as a URL, as UseUrls takes one (the same host rules), named so that its bound port can be
            // told from the others' when each was asked as 0.
            var ports = new Dictionary<string, string?> { ["Endpoints:Rest:Url"] = Url(options.Host, options.Port) };
            if (options.GrpcPort is { } grpcPort)
                (ports["Endpoints:Grpc:Url"], ports["Endpoints:Grpc:Protocols"]) = (Url(options.Host, grpcPort), "Http2"); // h2c: prior knowledge
            if (options.MetricsPort is { } metricsPort)
                ports["Endpoints:Metrics:Url"] = Url(options.Host, metricsPort);
            kestrel.Configure(new ConfigurationBuilder().AddInMemoryCollection(ports).Build())
                .Endpoint("Rest", rest => listening.Rest = rest.ListenOptions)
                .Endpoint("Grpc", grpc => listening.Grpc = grpc.ListenOptions)
                .Endpoint("Metrics", metrics => listening.Metrics = metrics.ListenOptions);
            kestrel.Limits.MaxRequestBodySize = null; // the endpoints hold the limit themselves, in the server's words
            kestrel.Limits.MinRequestBodyDataRate = new(options.MinBodyBytesPerSecond, options.BodyRateGrace);
            kestrel.AddServerHeader = false;
            if (log is not null)
                kestrel.ConfigureEndpointDefaults(listen => listen.Use(next => async connection =>
                {
                    try
                    {
                        await next(connection);
                    }
                    finally
                    {
                        log.Closed(connection.ConnectionId);
                    }
                }));
        });
        var app = builder.Build();
        if (log is not null)
            app.Use(async (context, next) =>
            {
                long start = Stopwatch.GetTimestamp();
                try
                {
                    await next(context);
                }
                finally
                {
                    log.Add(context, Stopwatch.GetElapsedTime(start));
                }
            });
        app.Use(async (context, next) =>
        {
            long start = Stopwatch.GetTimestamp();
            try
            {
                await next(context);
            }
            finally
            {
                endpoints.Metrics.Answered(context, Stopwatch.GetElapsedTime(start));
            }
        });
        // The metrics port: GET /metrics and nothing else, for any Host allowed, without the API key (as Triton's
        // metrics port: a scraper carries none; the port stays inside the cluster).
        app.MapWhen(listening.IsMetrics, metrics =>
        {
            metrics.Use(async (context, next) =>
            {
                if (await endpoints.Admit(context, keyed: false))
                    await next(context);
            });
            metrics.Map("/metrics", scrape => scrape.Use((context, next) =>
            {
                ServeMetrics.Scrape(context);
                return next(context);
            }).UseMetricServer(url: null, registry: endpoints.Metrics.Registry));
            metrics.Run(context => HitEndpoints.Error(context, StatusCodes.NotFound,
                $"this port serves GET /metrics only; the rest is on {string.Join(", ", listening.Of(listening.Rest))}"));
        });
        app.Use(async (context, next) =>
        {
            if (await endpoints.Admit(context))
                await next(context);
        });
        // What routing answers itself, an empty 404 (no such path) or 405 (a path asked with another method):
        // the same JSON line as every refusal.
        app.Use(async (context, next) =>
        {
            await next(context);
            if (context.Response is { StatusCode: 404 or 405, HasStarted: false, ContentType: null }) // not one of ours
            {
                string path = InputException.OneLine(context.Request.Path.ToString());
                await HitEndpoints.Error(context, context.Response.StatusCode, context.Response.StatusCode == 405
                    ? $"{context.Request.Method} is not allowed on {path}"
                    : $"no endpoint {context.Request.Method} {path}: see / (the page), /predict and /v2/models/{options.Name}");
            }
        });
        endpoints.Map(app);
        app.MapGrpcService<GrpcInference>();
        var server = new HitServer(app, endpoints, log, listening);
        try
        {
            endpoints.WarmUp();
            await app.StartAsync();
            var addresses = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()!;
            listening.All = () => addresses.Addresses;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
        return server;
    }

    private static string Url(string host, int port) => $"http://{(host.Contains(':') ? $"[{host}]" : host)}:{port}";

    /// <summary>The ports' listen options, and the addresses Kestrel bound for each (its port, once bound).</summary>
    private sealed class Listening
    {
        public Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions? Rest, Grpc, Metrics;
        public Func<IEnumerable<string>> All { get; set; } = () => [];

        /// <summary>Whether a request came to the metrics port (its bound port: a client learns it only once it is bound).</summary>
        public bool IsMetrics(HttpContext context) => Metrics?.IPEndPoint is { } bound && context.Connection.LocalPort == bound.Port;

        public IReadOnlyList<string> Of(Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions? port) =>
            port?.IPEndPoint is { } bound ? [.. All().Where(address => new Uri(address).Port == bound.Port)] : [];
    }

    /// <summary>Waits for a stop: Ctrl+C, SIGTERM, or <see cref="StopAsync"/>.</summary>
    public Task WaitForShutdownAsync() => app.WaitForShutdownAsync();

    public Task StopAsync() => app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        await app.DisposeAsync();
        await endpoints.DisposeAsync();
        if (log is not null)
            await log.DisposeAsync();
    }

    /// <summary>
    /// One line per request, written by one task so that handlers never wait on the console:
    /// "2026-12-01T17:03:04.567Z POST /predict rows=3 status=200 1.84 ms" (a gRPC call's: "status=200 grpc=NotFound").
    /// </summary>
    private sealed class RequestLog : IAsyncDisposable
    {
        private readonly Channel<string> lines = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
        private readonly Task writer;

        public RequestLog(TextWriter output) => writer = Task.Run(async () =>
        {
            while (await lines.Reader.WaitToReadAsync())
            {
                while (lines.Reader.TryRead(out var line))
                    output.WriteLine(line);
                output.Flush();
            }
        });

        // Connections whose last request the app answered for a refusal of Kestrel's (a body's bad chunks, too
        // slow): Kestrel logs that refusal after the app's line, then closes the connection.
        private readonly ConcurrentDictionary<string, byte> answered = new();

        public bool Answered(string? connection) => connection is not null && answered.TryRemove(connection, out _);

        public void Closed(string connection) => answered.TryRemove(connection, out _);

        public void Add(HttpContext context, TimeSpan elapsed)
        {
            if (context.Items.ContainsKey(HitEndpoints.BadRequestItem))
                answered[context.Connection.Id] = 0;
            string rows = context.Items.TryGetValue(HitEndpoints.RowsItem, out var n) ? n!.ToString()! : "-";
            string failure = context.Items.TryGetValue(HitEndpoints.FailureItem, out var f) ? $": {f}" : "";
            // 499 (nginx's): the client went before any answer, which it will never read.
            int status = context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted ? 499 : context.Response.StatusCode;
            string grpc = GrpcInference.AnsweredStatus(context) is { } code ? $" grpc={code}" : ""; // a call's own status: its HTTP status is 200
            lines.Writer.TryWrite(string.Create(CultureInfo.InvariantCulture,
                $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {context.Request.Method} " +
                $"{InputException.OneLine(context.Request.Path + context.Request.QueryString.ToString())} " +
                $"rows={rows} status={status}{grpc} {elapsed.TotalMilliseconds:F2} ms{failure}"));
        }

        /// <summary>A request Kestrel refused before the app saw it: its method and path are not known.</summary>
        public void AddRefused(int status, string message) =>
            lines.Writer.TryWrite(string.Create(CultureInfo.InvariantCulture,
                $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} - - rows=- status={status} refused by Kestrel: {InputException.OneLine(message)}"));

        public async ValueTask DisposeAsync()
        {
            lines.Writer.TryComplete();
            await writer;
        }
    }

    /// <summary>Kestrel's bad-request logger, into the request log: its refusals carry their status.</summary>
    private sealed class KestrelRefusals(RequestLog log) : ILoggerProvider, ILogger
    {
        public const string Category = "Microsoft.AspNetCore.Server.Kestrel.BadRequests";

        public ILogger CreateLogger(string categoryName) => categoryName == Category ? this : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

        public bool IsEnabled(LogLevel logLevel) => true;

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            // A body the app was reading (bad chunks, too slow): the app answered it with a JSON line and logged it.
            string? connection = state is IReadOnlyList<KeyValuePair<string,
                object?>> fields ? fields.FirstOrDefault(f => f.Key == "ConnectionId").Value as string : null;
            if (exception is BadHttpRequestException refused && !log.Answered(connection))
                log.AddRefused(refused.StatusCode, refused.Message);
        }

        public void Dispose() { }
    }
}

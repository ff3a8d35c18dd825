// `hitgpu serve`: the model's endpoints on Kestrel, with what a standalone server adds: one log line per
// request (method, path, songs, status, milliseconds; what failed, for a 500; Kestrel's refusals before the
// app too), a JSON 404 for unknown paths and 405 for other methods, and a stop (Ctrl+C, SIGTERM, StopAsync) that takes no new connections, lets the requests in flight
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
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace HitGpu.Serve;

public sealed class HitServer : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly HitEndpoints endpoints;
    private readonly RequestLog? log;

    private HitServer(WebApplication app, HitEndpoints endpoints, RequestLog? log) => (this.app, this.endpoints, this.log) = (app, endpoints, log);

    /// <summary>The addresses Kestrel listens on (with the port it took when asked for port 0).</summary>
    public IReadOnlyList<string> Addresses => [.. app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()!.Addresses];

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
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
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
        builder.WebHost.UseUrls($"http://{(options.Host.Contains(':') ? $"[{options.Host}]" : options.Host)}:{options.Port}");
        var app = builder.Build();
        var endpoints = new HitEndpoints(model, device, options);
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
        var server = new HitServer(app, endpoints, log);
        try
        {
            endpoints.WarmUp();
            await app.StartAsync();
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
        return server;
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
    /// "2026-12-01T17:03:04.567Z POST /predict rows=3 status=200 1.84 ms".
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
            lines.Writer.TryWrite(string.Create(CultureInfo.InvariantCulture,
                $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {context.Request.Method} {InputException.OneLine(context.Request.Path + context.Request.QueryString.ToString())} "
                + $"rows={rows} status={status} {elapsed.TotalMilliseconds:F2} ms{failure}"));
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
            string? connection = state is IReadOnlyList<KeyValuePair<string, object?>> fields ? fields.FirstOrDefault(f => f.Key == "ConnectionId").Value as string : null;
            if (exception is BadHttpRequestException refused && !log.Answered(connection))
                log.AddRefused(refused.StatusCode, refused.Message);
        }

        public void Dispose() { }
    }
}

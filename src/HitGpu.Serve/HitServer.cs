// `hitgpu serve`: the model's endpoints on Kestrel, with what a standalone server adds: one log line per
// request (method, path, songs, status, milliseconds; what failed, for a 500), a JSON 404 for unknown paths
// and 405 for other methods, and a stop (Ctrl+C, SIGTERM, StopAsync) that takes no new connections, lets the requests in flight
// finish (up to DrainTimeout), then scores what was queued and frees the device buffers.
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
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.DrainTimeout);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = null; // the endpoints hold the limit themselves, in the server's words
            kestrel.AddServerHeader = false;
        });
        builder.WebHost.UseUrls($"http://{(options.Host.Contains(':') ? $"[{options.Host}]" : options.Host)}:{options.Port}");
        var app = builder.Build();
        var endpoints = new HitEndpoints(model, device, options);
        var log = options.RequestLog is { } writer ? new RequestLog(writer) : null;
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

        public void Add(HttpContext context, TimeSpan elapsed)
        {
            string rows = context.Items.TryGetValue(HitEndpoints.RowsItem, out var n) ? n!.ToString()! : "-";
            string failure = context.Items.TryGetValue(HitEndpoints.FailureItem, out var f) ? $": {f}" : "";
            lines.Writer.TryWrite(string.Create(CultureInfo.InvariantCulture,
                $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {context.Request.Method} {InputException.OneLine(context.Request.Path + context.Request.QueryString.ToString())} rows={rows} status={context.Response.StatusCode} {elapsed.TotalMilliseconds:F2} ms{failure}"));
        }

        public async ValueTask DisposeAsync()
        {
            lines.Writer.TryComplete();
            await writer;
        }
    }
}

// The endpoints of one model: the Open Inference Protocol's (health, metadata, infer, plain and under the
// model's one version; tensors in JSON or binary), /predict for CSV and JSON records, /model and the page;
// every GET answers HEAD. Map them into any ASP.NET Core app (Map), or run them with HitServer. Every request
// passes Admit first (nosniff, the allowed hosts, the API key). Every refusal is one JSON line,
// {"error": "..."}, with 400 for bad input (the CLI's words) or a Host not allowed, 401 without the API key,
// 404 for an unknown model or version, 408 for a body that came too slowly, 413 over a limit, 415 for a body
// that is neither CSV nor JSON (or one a page may post cross-site), 503 when busy (ServeOptions.MaxUploads,
// ServeOptions.MaxInFlight) or stopping.
using System.Buffers;
using System.Globalization;
using System.Net;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using HitGpu.Kernels;
using HitGpu.Nn;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace HitGpu.Serve;

public sealed class HitEndpoints : IAsyncDisposable
{
    /// <summary>Where a handler leaves the songs a request carried, for the request log.</summary>
    public const string RowsItem = "hitgpu.rows";

    /// <summary>Marks a request answered for a refusal of Kestrel's (a body's bad chunks, too slow), which Kestrel logs too.</summary>
    public const string BadRequestItem = "hitgpu.bad-request";

    /// <summary>Where a 500 leaves what failed, for the request log: the answer does not say it (it may name a path).</summary>
    public const string FailureItem = "hitgpu.failure";

    public HitModel Model { get; }
    public ServeOptions Options { get; }
    public ScoringQueue Queue { get; }

    /// <summary>What the server counts (HitServer serves it at /metrics on ServeOptions.MetricsPort).</summary>
    public ServeMetrics Metrics { get; }

    private readonly Dictionary<string, (byte[] Bytes, string Type)> page;
    private readonly ComputeDevice[] ownDevices; // the scorers' devices beyond the caller's
    private readonly SemaphoreSlim inFlight;
    private readonly Uploads uploads;
    private readonly IdleTrim idleTrim = new();
    private readonly CancellationTokenSource stopExplaining = new(); // cancelled some time into a stop (StopExplainingAfter)
    private readonly byte[]? apiKeyHash; // SHA-256 of ServeOptions.ApiKey, null without one

    public HitEndpoints(HitModel model, ComputeDevice device, ServeOptions options)
    {
        options.Validate();
        (Model, Options) = (model, options);
        Metrics = new(options.InHostWords);
        inFlight = new SemaphoreSlim(options.MaxInFlight);
        uploads = new Uploads(options);
        apiKeyHash = options.ApiKey is { } apiKey ? SHA256.HashData(Encoding.UTF8.GetBytes(apiKey)) : null;
        ownDevices = [.. Enumerable.Range(1, device.Plan.ServingScorers - 1).Select(_ => ComputeDevice.Open(device.Kind))];
        Queue = new ScoringQueue([device, .. ownDevices], model, options.BatchWindow ?? device.Plan.ServingBatchWindow, options.MaxBatchRows,
            options.ExplainSteps,
            Metrics);
        page = new()
        {
            ["/"] = (Resource("index.html"), "text/html; charset=utf-8"),
            ["/page.js"] = (Resource("page.js"), "text/javascript; charset=utf-8"),
            ["/page.css"] = (Resource("page.css"), "text/css; charset=utf-8"),
        };
    }

    /// <summary>
    /// Scores and explains one song (the training medians, or zeros) before the first client does, so that
    /// the kernels' compilation is not in anyone's answer: readiness comes after it.
    /// </summary>
    public void WarmUp() => Queue.WarmUp(Model.Preprocessing.Statistics?.Median ?? new float[SongData.FeatureCount]);

    private static byte[] Resource(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream($"HitGpu.Serve.Page.{name}")
            ?? throw new InvalidOperationException($"the page's {name} is missing from the assembly");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>
    /// Maps the model's endpoints (the protocol's, /predict, /model and the page at /) into an app, each GET
    /// answering HEAD too, and each request passing <see cref="Admit"/> first.
    /// </summary>
    public void Map(IEndpointRouteBuilder app)
    {
        app.ServiceProvider.GetService<IHostApplicationLifetime>()?.ApplicationStopping.Register(() => StopExplainingAfter(Options.DrainTimeout / 2));
        var routes = app.MapGroup("");
        routes.AddEndpointFilter(async (invocation, next) => await Admit(invocation.HttpContext) ? await next(invocation) : Results.Empty);
        foreach (var (path, (bytes, type)) in page)
            Get(routes, path, (HttpContext context) => Write(context, type, bytes));
        Get(routes, "/v2/health/live", (HttpContext context) => Json(context, 200, json => json.WriteBoolean("live", true)));
        Get(routes, "/v2/health/ready", (HttpContext context) => Json(context, 200, json => json.WriteBoolean("ready", true)));
        Get(routes, "/v2", (HttpContext context) => Json(context, 200, json =>
        {
            json.WriteString("name", ServerName);
            json.WriteString("version", ServerVersion);
            json.WriteStartArray("extensions");
            foreach (string extension in Extensions)
                json.WriteStringValue(extension);
            json.WriteEndArray();
        }));
        // The model's paths, plain and under its one version (the protocol's /versions/{version}).
        foreach (string model in (string[])["/v2/models/{name}", "/v2/models/{name}/versions/{version}"])
        {
            Get(routes, model, (HttpContext context) => Guard(context, () => { Known(context); return Json(context, 200, Metadata); }));
            Get(routes, model + "/ready", (HttpContext context) => Guard(context, () =>
            {
                Known(context);
                return Json(context, 200, json =>
                {
                    json.WriteString("name", Options.Name);
                    json.WriteBoolean("ready", true);
                });
            }));
            routes.MapPost(model + "/infer", (HttpContext context) => Guard(context, () => Infer(context)));
        }
        routes.MapPost("/predict", (HttpContext context) => Guard(context, () => Predict(context)));
        Get(routes, "/model", (HttpContext context) => Json(context, 200, ModelInfo));
    }

    private static readonly string[] GetAndHead = [HttpMethods.Get, HttpMethods.Head];

    /// <summary>What the server's metadata says it is, over REST (/v2) and gRPC (ServerMetadata).</summary>
    public const string ServerName = "hitgpu";

    public static readonly string ServerVersion = typeof(HitEndpoints).Assembly.GetName().Version?.ToString(3) ?? "0";

    /// <summary>The model's platform in its metadata (the protocol's name for what runs it).</summary>
    public const string Platform = "hitgpu";

    /// <summary>The protocol's extensions the server offers, named as Triton names them.</summary>
    public static readonly string[] Extensions = ["binary_tensor_data"];

    /// <summary>A GET endpoint that answers HEAD too (RFC 9110 asks it of every GET): the same status and headers, no body (<see cref="Send"/>).</summary>
    private static void Get(IEndpointRouteBuilder routes, string pattern, Delegate handler) => routes.MapMethods(pattern, GetAndHead, handler);

    /// <summary>Marks what every request passes first, once (the server's pipeline, then the endpoints' filter).</summary>
    private const string AdmittedItem = "hitgpu.admitted";

    /// <summary>
    /// What every request passes before anything reads it; HitServer runs it for every path, <see cref="Map"/>
    /// for the endpoints. Its answer, whatever it is, says X-Content-Type-Options: nosniff (a browser takes a
    /// JSON line or CSV for what its type says, never for a page or a script); its Host must be one the server
    /// answers to (<see cref="ServeOptions.AllowedHosts"/>), and it must carry the key where there is one
    /// (<see cref="ServeOptions.ApiKey"/>). False: refused, and answered (400, 401).
    /// </summary>
    /// <param name="keyed">False for the metrics port, where no key is asked.</param>
    public async ValueTask<bool> Admit(HttpContext context, bool keyed = true)
    {
        if (!context.Items.TryAdd(AdmittedItem, true))
            return true;
        // At the start of the answer: a refusal's Response.Clear() does not take it away.
        context.Response.OnStarting(static response =>
        {
            ((HttpResponse)response).Headers.XContentTypeOptions = "nosniff";
            return Task.CompletedTask;
        }, context.Response);
        if (HostProblem(context.Request.Host.Host) is { } problem)
        {
            ServeMetrics.Refused(context, "host_not_allowed");
            await Refuse(context, new RequestRefusedException(StatusCodes.BadRequest, problem));
            return false;
        }
        if (keyed && apiKeyHash is not null && !Probes.Contains(context.Request.Path.Value?.TrimEnd('/'), StringComparer.OrdinalIgnoreCase)
            && KeyProblem(context.Request) is { } missing)
        {
            ServeMetrics.Refused(context, "unauthenticated");
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await Refuse(context, new RequestRefusedException(StatusCodes.Unauthorized, missing));
            return false;
        }
        return true;
    }

    /// <summary>The paths a prober asks without a key: a liveness or readiness probe carries no secret (REST's, gRPC's ServerLive and ServerReady).</summary>
    private static readonly string[] Probes = ["/v2/health/live", "/v2/health/ready", GrpcInference.LivePath, GrpcInference.ReadyPath];

    /// <summary>Why a request's key (Authorization: Bearer KEY, or X-Api-Key: KEY) is refused, or null.</summary>
    private string? KeyProblem(HttpRequest request)
    {
        string? given = request.Headers["X-Api-Key"] is [{ } key] ? key
            : request.Headers.Authorization is [{ } authorization] && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
                ? authorization["Bearer ".Length..].Trim()
            : null;
        if (given is null)
            return "this server needs an API key: send Authorization: Bearer KEY or X-Api-Key: KEY";
        // Their hashes compared, in constant time: the time taken says nothing of how much of the key, or of its length, was right.
        return CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), apiKeyHash) ? null : "the API key is not this server's";
    }

    /// <summary>Why a request's Host (its name, without the port) is refused, or null.</summary>
    private string? HostProblem(string host)
    {
        host = host.TrimEnd('.'); // "localhost." is localhost
        if (Options.AllowedHosts is { } named)
            return named.Any(allowed => allowed == "*" || string.Equals(allowed, host, StringComparison.OrdinalIgnoreCase))
                ? null : $"the Host '{InputException.OneLine(host)}' is refused: it is not one this server answers to " +
                    $"({ServeOptions.Named(nameof(ServeOptions.AllowedHosts))})";
        return !IsLoopback(Options.Host) || IsLoopback(host)
            ? null : $"the Host '{InputException.OneLine(host)}' is refused: a server on a loopback address answers loopback names only " +
                $"(localhost, 127.x.x.x, [::1]); others: {ServeOptions.Named(nameof(ServeOptions.AllowedHosts))}";
    }

    /// <summary>localhost, or an address of the loopback (127.x.x.x, ::1, with or without brackets).</summary>
    private static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host.Trim('[', ']'), out var address)
            && IPAddress.IsLoopback(address));

    /// <summary>Bodies being waited for now (each holding an upload slot, <see cref="ServeOptions.MaxUploads"/>).</summary>
    public int UploadsInProgress => uploads.InProgress;

    /// <summary>The collections made to give memory back after bursts (<see cref="IdleTrim"/>).</summary>
    public long MemoryTrims => idleTrim.Trims;

    /// <summary>
    /// Reads a request's body (<see cref="Uploads"/>), then runs the handler of its songs in a slot
    /// (<see cref="Limited"/>): the slot is taken only once the body is here, so that slow senders never hold one.
    /// </summary>
    private async Task WithBody(HttpContext context, Func<byte[], Task> handler)
    {
        byte[] body;
        using (Metrics.Upload())
            body = await uploads.Read(context);
        idleTrim.Begin(body.Length);
        try
        {
            await Limited(() => handler(body));
        }
        finally
        {
            idleTrim.End();
        }
    }

    /// <summary>A handler of songs (a body already read, or a gRPC message), if fewer than <see cref="ServeOptions.MaxInFlight"/> are running; else 503 at
    /// once.</summary>
    internal async Task Limited(Func<Task> handler)
    {
        if (!inFlight.Wait(0))
            throw new RequestRefusedException(StatusCodes.Unavailable,
                $"busy: {Options.MaxInFlight} requests with songs in flight, the most this server takes " +
                $"({ServeOptions.Named(nameof(ServeOptions.MaxInFlight))}); send it again");
        try
        {
            using var slot = Metrics.InFlight();
            await handler();
        }
        finally
        {
            inFlight.Release();
        }
    }

    /// <summary>Refuses (404) a model path's name other than the model's, and a version other than its one.</summary>
    private void Known(HttpContext context) => Known((string)context.Request.RouteValues["name"]!, context.Request.RouteValues["version"] as string);

    /// <summary>Refuses (404) a model name other than the model's, and a version other than its one (null or empty: any).</summary>
    internal void Known(string name, string? version)
    {
        if (name != Options.Name)
            throw new RequestRefusedException(StatusCodes.NotFound, $"unknown model '{InputException.OneLine(name)}': this server serves '{Options.Name}'");
        if (version is { Length: > 0 } && version != SongRequests.ModelVersion)
            throw new RequestRefusedException(StatusCodes.NotFound,
                $"model '{Options.Name}' has no version '{InputException.OneLine(version)}': its one version is '{SongRequests.ModelVersion}'");
    }

    /// <summary>The protocol's inference: its tensor in JSON or in binary after it, its output as asked.</summary>
    private Task Infer(HttpContext context)
    {
        Known(context);
        return WithBody(context, body => Infer(context, body));
    }

    private async Task Infer(HttpContext context, byte[] body)
    {
        string? headerLength = context.Request.Headers[SongRequests.HeaderLengthName] is [{ } length] ? length : null;
        var request = SongRequests.ReadInfer(body, Options.MaxRows, headerLength);
        context.Items[RowsItem] = request.Features.Length / SongData.FeatureCount;
        var probabilities = await Queue.Score(request.Features);
        if (request.BinaryOutput)
        {
            // The JSON first, to say its length; then the values after it.
            var head = new ArrayBufferWriter<byte>();
            SongRequests.WriteInfer(head, Options.Name, request.Id, probabilities, binary: true);
            context.Response.Headers[SongRequests.HeaderLengthName] = head.WrittenCount.ToString(CultureInfo.InvariantCulture);
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = head.WrittenCount + (long)probabilities.Length * sizeof(float);
            context.Response.BodyWriter.Write(head.WrittenSpan);
            SongRequests.WriteBinary(context.Response.BodyWriter, probabilities);
            return;
        }
        context.Response.ContentType = "application/json";
        SongRequests.WriteInfer(context.Response.BodyWriter, Options.Name, request.Id, probabilities);
    }

    private Task Predict(HttpContext context)
    {
        bool explain = context.Request.Query["explain"] is var values && values.Count > 0 && ExplainFlag(values[0]);
        var form = Form(context.Request.ContentType);
        return WithBody(context, body => Predict(context, body, explain, form));
    }

    private async Task Predict(HttpContext context, byte[] body, bool explain, BodyForm form)
    {
        if (form == BodyForm.Sniff)
            form = SongRequests.WithoutBom(body).TrimStart(" \t\r\n"u8) is [(byte)'[' or (byte)'{', ..] ? BodyForm.Json : BodyForm.Csv;
        var songs = form == BodyForm.Json ? SongRequests.ReadRecords(body, Options.MaxRows) : SongRequests.ReadCsv(body, Options.MaxRows);
        context.Items[RowsItem] = songs.Count;
        if (explain && songs.Count > Options.MaxExplainSongs)
            throw new RequestRefusedException(StatusCodes.TooLarge,
                $"request body: {songs.Count} songs to explain, more than the {Options.MaxExplainSongs} an explained request may send "
                + $"({ServeOptions.Named(nameof(ServeOptions.MaxExplainSongs))}); send fewer, or leave out explain");
        Attributions? explained = explain ? await Explain(context, songs.Table) : null;
        var probabilities = explained?.Probabilities ?? await Queue.Score(songs.Features);
        if (form == BodyForm.Json)
        {
            context.Response.ContentType = "application/json";
            SongRequests.WriteRecords(context.Response.BodyWriter, songs, probabilities, explained);
        }
        else
        {
            context.Response.ContentType = "text/csv; charset=utf-8";
            await context.Response.WriteAsync(SongRequests.WriteCsv(songs, probabilities, explained));
        }
    }

    /// <summary>
    /// The songs' explanation, cancelled when the client goes (the log says 499) or when a stop has gone on for
    /// half the drain (503: the answer comes within the drain, and another replica can take the request).
    /// </summary>
    private async Task<Attributions> Explain(HttpContext context, SongTable songs)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopExplaining.Token);
        try
        {
            return await Queue.Explain(songs, cancel.Token);
        }
        catch (OperationCanceledException) when (stopExplaining.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
        {
            throw new RequestRefusedException(StatusCodes.Unavailable,
                $"the server is stopping: explanations still running {(Options.DrainTimeout / 2).TotalSeconds:0.#} s into the stop are cancelled; "
                + "send it again (to another replica)");
        }
    }

    /// <summary>
    /// Cancels the explanations running <paramref name="delay"/> from now, and any asked later: a stop calls it
    /// (Map registers it for the host's stop), so that no explanation outlasts the drain.
    /// </summary>
    public void StopExplainingAfter(TimeSpan delay) => stopExplaining.CancelAfter(delay);

    private static bool ExplainFlag(string? value) => value?.ToLowerInvariant() switch
    {
        "" or "true" or "1" or "yes" => true,
        "false" or "0" or "no" => false,
        _ => throw new InputException($"explain must be true or false, got '{InputException.OneLine(value!)}'"),
    };

    private enum BodyForm { Json, Csv, Sniff }

    /// <summary>
    /// JSON or CSV by the body's type; none or octet-stream: by its first character. The three types a web page
    /// may post to another site without asking first (CORS "simple" requests: text/plain, a form, a multipart
    /// form) are refused before the body is read, so that no page a user visits can make their browser send songs.
    /// </summary>
    private static BodyForm Form(string? contentType)
    {
        string type = (contentType ?? "").Split(';')[0].Trim().ToLowerInvariant();
        return type switch
        {
            "application/json" or "text/json" => BodyForm.Json,
            _ when type.EndsWith("+json", StringComparison.Ordinal) => BodyForm.Json,
            "text/csv" or "application/csv" or "text/tab-separated-values" => BodyForm.Csv,
            "" or "application/octet-stream" => BodyForm.Sniff,
            "text/plain" or "application/x-www-form-urlencoded" or "multipart/form-data" => throw new RequestRefusedException(StatusCodes.UnsupportedType,
                $"a body of type '{type}' is refused: any web page can make a browser send it here without asking (a CORS simple request); send " +
                    $"text/csv or application/json"),
            _ => throw new RequestRefusedException(StatusCodes.UnsupportedType,
                $"a body of type '{InputException.OneLine(type)}' cannot hold songs: send text/csv or application/json"),
        };
    }

    /// <summary>Runs a handler; a refusal becomes its status and one JSON line, an unexpected failure a 500 (the server goes on).</summary>
    private async Task Guard(HttpContext context, Func<Task> handler)
    {
        try
        {
            await handler();
        }
        catch (Exception e) when (!context.Response.HasStarted && Refusal(e) is var (status, message))
        {
            if (status == 500)
                context.Items[FailureItem] = $"{e.GetType().Name}: {InputException.OneLine(e.Message)}";
            if (e is BadHttpRequestException)
                context.Items[BadRequestItem] = true;
            ServeMetrics.Refused(context, e, status);
            context.Response.Clear();
            await Error(context, status, message);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // the client went away: nothing to answer (the log says 499)
        }
    }

    /// <summary>
    /// A refusal's status and its words to the client, in the host's (<see cref="ServeOptions.InHostWords"/>): REST's
    /// (<see cref="Guard"/>, <see cref="Admit"/>) and gRPC's refusals pass here (HitServer's 404 and 405, which name
    /// no option, go straight to <see cref="Error"/>); null: nothing to answer.
    /// </summary>
    internal (int Status, string Message)? Refusal(Exception e)
    {
        (int Status, string Message)? refusal = e switch
        {
            RequestRefusedException refused => (refused.Status, refused.Message),
            InputException => (StatusCodes.BadRequest, InputException.OneLine(e.Message)),
            ScoringQueue.StoppingException => (StatusCodes.Unavailable, e.Message),
            BadHttpRequestException bad => (bad.StatusCode, InputException.OneLine(bad.Message)),
            OperationCanceledException => null, // the client went away: nothing to answer
            // An unexpected failure's message is for the operator (the request log), not the client: it may name a server path.
            _ => (500, $"internal error: {e.GetType().Name} (the server's log has its message)"),
        };
        return refusal is var (status, message) ? (status, Options.InHostWords(message)) : null;
    }

    /// <summary>Answers a refusal of the pipeline's (a Host not allowed, no key) in the words every refusal takes.</summary>
    private Task Refuse(HttpContext context, RequestRefusedException refused)
    {
        var (status, message) = Refusal(refused)!.Value;
        return Error(context, status, message);
    }

    /// <summary>A refusal: one JSON line with its status; to a gRPC call, its gRPC status (<see cref="GrpcInference.Refuse"/>).</summary>
    public static Task Error(HttpContext context, int status, string message) =>
        GrpcInference.IsGrpc(context.Request) ? GrpcInference.Refuse(context, status, message)
            : Json(context, status, json => json.WriteString("error", message));

    private static Task Json(HttpContext context, int status, Action<Utf8JsonWriter> body)
    {
        var bytes = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(bytes, SongRequests.WriterOptions))
        {
            json.WriteStartObject();
            body(json);
            json.WriteEndObject();
        }
        context.Response.StatusCode = status;
        return Send(context, "application/json", bytes.WrittenMemory);
    }

    private static Task Write(HttpContext context, string type, byte[] bytes)
    {
        context.Response.Headers.CacheControl = "no-cache";
        return Send(context, type, bytes);
    }

    /// <summary>A whole answer with its length: a HEAD gets the headers a GET gets, and no body.</summary>
    private static Task Send(HttpContext context, string type, ReadOnlyMemory<byte> bytes)
    {
        context.Response.ContentType = type;
        context.Response.ContentLength = bytes.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : context.Response.Body.WriteAsync(bytes).AsTask();
    }

    private void Metadata(Utf8JsonWriter json)
    {
        json.WriteString("name", Options.Name);
        json.WriteStartArray("versions");
        json.WriteStringValue(SongRequests.ModelVersion);
        json.WriteEndArray();
        json.WriteString("platform", Platform);
        json.WriteStartArray("inputs");
        json.WriteStartObject();
        SongRequests.WriteTensorHead(json, SongRequests.InputName, -1, SongData.FeatureCount);
        // The columns' order; parameters hold scalars only, so the names come as one comma-separated string.
        json.WriteStartObject("parameters");
        json.WriteString("features", string.Join(",", SongData.FeatureNames));
        json.WriteEndObject();
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteStartArray("outputs");
        json.WriteStartObject();
        SongRequests.WriteTensorHead(json, SongRequests.OutputName, -1, 1);
        json.WriteEndObject();
        json.WriteEndArray();
    }

    /// <summary>What the page shows: the name, the features' training ranges and medians, the provenance, the limits.</summary>
    private void ModelInfo(Utf8JsonWriter json)
    {
        json.WriteString("name", Options.Name);
        json.WriteString("file", Options.ModelFile is null ? null : FileName(Options.ModelFile));
        var statistics = Model.Preprocessing.Statistics;
        json.WriteStartArray("features");
        for (int f = 0; f < SongData.FeatureCount; f++)
        {
            json.WriteStartObject();
            json.WriteString("name", SongData.FeatureNames[f]);
            foreach (var (key, values) in new[] { ("min", statistics?.Min), ("median", statistics?.Median), ("max", statistics?.Max) })
            {
                if (values is null)
                    json.WriteNull(key);
                else
                    json.WriteNumber(key, values[f]);
            }
            json.WriteEndObject();
        }
        json.WriteEndArray();
        if (Model.Provenance is { } p)
        {
            json.WriteStartObject("training");
            json.WriteStartArray("data");
            foreach (var file in p.Data)
            {
                json.WriteStartObject();
                json.WriteString("source", FileName(file.Source));
                json.WriteNumber("rows", file.Rows);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteNumber("seed", p.Seed);
            json.WriteNumber("epochs", p.Epochs);
            json.WriteNumber("batch_size", p.BatchSize);
            json.WriteNumber("learning_rate", p.LearningRate);
            json.WriteNumber("train_accuracy", p.TrainAccuracy);
            json.WriteNumber("validation_accuracy", p.ValidationAccuracy);
            json.WriteNumber("test_accuracy", p.TestAccuracy);
            json.WriteEndObject();
        }
        else
        {
            json.WriteNull("training");
        }
        json.WriteStartObject("limits");
        json.WriteNumber("max_rows", Options.MaxRows);
        json.WriteNumber("max_body_bytes", Options.MaxBodyBytes);
        json.WriteEndObject();
    }

    /// <summary>A path's last part: clients see which file, not where it lies on a machine (with either separator: a model may come from Windows).</summary>
    private static string FileName(string path) => path[(path.LastIndexOfAny(['/', '\\']) + 1)..];

    public async ValueTask DisposeAsync()
    {
        await Queue.DisposeAsync();
        foreach (var device in ownDevices)
            device.Dispose();
        inFlight.Dispose();
        uploads.Dispose();
        stopExplaining.Dispose();
        idleTrim.Dispose();
    }
}

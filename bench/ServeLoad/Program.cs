// Load generator for bench/serve/load.sh: --clients concurrent loops of KServe v2 infer requests of --rows songs
// each against one loopback server, in one of three forms (--protocol): json (REST, the tensor in JSON), binary (REST
// with the binary tensor data extension both ways: a JSON header, then FP32 little-endian, Inference-Header-Content-Length)
// or grpc (ModelInfer with raw_input_contents, on the server's --grpc address). Before timing it checks the answer to
// every body once (the right count, each a probability in [0,1], and for binary and gRPC the REST JSON answer for the
// same songs, bit for bit), so that the figures count only correct work; while timing, each answer is read whole,
// decoded and checked for count and range. Then --warmup seconds unmeasured and --seconds measured; prints one line of
// JSON (throughput, latency percentiles, errors, the server's memory from /proc/PID/status, both sides' CPU).
// With --write DIR it only checks, then writes the first body in each REST form of --protocol (json; binary: both) for
// another load generator (autocannon in load.sh) to send: DIR/json.body, DIR/binary.body, DIR/binary.header-length.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Inference;

string[] featureNames = ["danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
    "liveness", "valence", "tempo", "duration_ms", "time_signature", "chorus_hit", "sections"];
const string HeaderLengthName = "Inference-Header-Content-Length";

var options = new Dictionary<string, string>();
for (int i = 0; i + 1 < args.Length; i += 2)
    options[args[i]] = args[i + 1];
if (!options.TryGetValue("--url", out var url) || !options.TryGetValue("--data", out var dataPath))
{
    Console.Error.WriteLine("usage: ServeLoad --url http://127.0.0.1:PORT/v2/models/NAME/infer --data features.csv [--protocol json|binary|grpc]"
        + " [--grpc http://127.0.0.1:GRPCPORT] [--clients 64] [--seconds 10] [--rows 1] [--warmup 2] [--pid SERVERPID] [--write DIR] [--grpc-channels 1]");
    return 2;
}
int clients = Option("--clients", 64), rows = Option("--rows", 1), pid = Option("--pid", 0), grpcChannels = Option("--grpc-channels", 1);
double seconds = Option("--seconds", 10.0), warmup = Option("--warmup", 2.0);
string protocol = options.GetValueOrDefault("--protocol", "json");
options.TryGetValue("--write", out var writeDir);
var uri = new Uri(url);
var grpcUri = options.TryGetValue("--grpc", out var grpcUrl) ? new Uri(grpcUrl) : null;
// The model's name from the REST path (/v2/models/NAME/infer): gRPC names it in the message.
string modelName = uri.Segments is [.., var name, "infer"] ? Uri.UnescapeDataString(name.TrimEnd('/')) : "";
// Bounded and loopback only: this is a benchmark of a local server, not a load tool for other hosts.
if (!uri.IsLoopback || clients is < 1 or > 1024 || rows is < 1 or > 10_000 || seconds is <= 0 or > 600 || warmup is < 0 or > 60
    || protocol is not ("json" or "binary" or "grpc") || (protocol == "grpc" && grpcUri is null) || grpcUri is { IsLoopback: false }
    || modelName.Length == 0 || (writeDir is not null && protocol == "grpc") || grpcChannels < 1 || grpcChannels > clients)
{
    Console.Error.WriteLine("ServeLoad: needs a loopback URL ending in /v2/models/NAME/infer, 1-1024 clients, 1-10000 rows, 0-600 s measured,"
        + " 0-60 s warm-up, --protocol json, binary or grpc, --grpc (loopback) with grpc, --write with json or binary,"
        + " 1 to --clients gRPC channels");
    return 2;
}

// Request bodies made up front in each form from the same songs, so that the clients spend their time on the protocol,
// not on formatting, and body b holds the same songs in every form.
var songs = ReadFeatures(dataPath, featureNames);
var random = new Random(1);
int bodyCount = Math.Max(clients, 16);
var jsonBodies = new byte[bodyCount][];
var binaryBodies = new byte[bodyCount][];
var headerLengths = new int[bodyCount];
var grpcRequests = new ModelInferRequest[bodyCount];
for (int b = 0; b < bodyCount; b++)
{
    // values: (rows, 15), row-major
    var values = new float[rows * 15];
    for (int r = 0; r < rows; r++)
        songs[random.Next(songs.Count)].CopyTo(values, r * 15);
    var json = new StringBuilder(64 + rows * 15 * 10);
    json.Append(CultureInfo.InvariantCulture, $"{{\"id\":\"{b}\",\"inputs\":[{{\"name\":\"features\",\"shape\":[{rows},15],\"datatype\":\"FP32\",\"data\":[");
    foreach (float value in values)
        json.Append(value.ToString("R", CultureInfo.InvariantCulture)).Append(',');
    json.Length--;
    json.Append("]}]}");
    jsonBodies[b] = Encoding.UTF8.GetBytes(json.ToString());

    var raw = new byte[values.Length * sizeof(float)];
    for (int v = 0; v < values.Length; v++)
        BinaryPrimitives.WriteSingleLittleEndian(raw.AsSpan(v * sizeof(float)), values[v]);
    var header = Encoding.UTF8.GetBytes($"{{\"id\":\"{b}\",\"inputs\":[{{\"name\":\"features\",\"shape\":[{rows},15],\"datatype\":\"FP32\","
        + $"\"parameters\":{{\"binary_data_size\":{raw.Length}}}}}],\"parameters\":{{\"binary_data_output\":true}}}}");
    headerLengths[b] = header.Length;
    binaryBodies[b] = [.. header, .. raw];

    var request = new ModelInferRequest { ModelName = modelName, Id = b.ToString(CultureInfo.InvariantCulture) };
    request.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "features", Datatype = "FP32", Shape = { rows, 15 } });
    request.RawInputContents.Add(ByteString.CopyFrom(raw));
    grpcRequests[b] = request;
}

using var http = new HttpClient(new SocketsHttpHandler
{
    MaxConnectionsPerServer = clients,
    UseProxy = false,
    UseCookies = false,
    AutomaticDecompression = DecompressionMethods.None,
    PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
})
{ Timeout = TimeSpan.FromSeconds(30) };
// One channel for all the clients by default, as a gRPC application holds one: HTTP/2 streams on one connection (more
// when the server's limit of concurrent streams is reached). --grpc-channels N spreads the clients over N (a probe of
// what one connection costs, not the benchmark's case).
var channels = Enumerable.Range(0, protocol == "grpc" ? grpcChannels : 0).Select(_ => GrpcChannel.ForAddress(grpcUri!, new GrpcChannelOptions
{
    HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true, UseProxy = false },
})).ToArray();
var grpc = channels.Select(c => new GRPCInferenceService.GRPCInferenceServiceClient(c)).ToArray();

// The check before timing: every body's REST JSON answer is well formed, and the protocol's answer is the same bits.
for (int b = 0; b < bodyCount; b++)
{
    string? problem;
    try
    {
        var reference = await InferJson(b);
        problem = CheckRange(reference, rows);
        if (problem is null && protocol != "json")
        {
            var answer = await Infer(b, 0);
            problem = CheckRange(answer, rows) ?? SameBits(reference, answer);
        }
    }
    catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException or AnswerException or RpcException)
    {
        problem = $"{e.GetType().Name}: {e.Message}";
    }
    if (problem is not null)
    {
        Console.Error.WriteLine($"ServeLoad: the {protocol} answer to body {b} ({rows} songs) is wrong: {problem}");
        return 1;
    }
}
if (writeDir is not null)
{
    Directory.CreateDirectory(writeDir);
    File.WriteAllBytes(Path.Combine(writeDir, "json.body"), jsonBodies[0]);
    if (protocol == "binary")
    {
        File.WriteAllBytes(Path.Combine(writeDir, "binary.body"), binaryBodies[0]);
        File.WriteAllText(Path.Combine(writeDir, "binary.header-length"), headerLengths[0].ToString(CultureInfo.InvariantCulture));
    }
    Console.WriteLine($"{{\"checked\":{bodyCount},\"protocol\":\"{protocol}\",\"rows\":{rows}}}");
    return 0;
}

long start = Stopwatch.GetTimestamp();
long windowStart = start + (long)(warmup * Stopwatch.Frequency), windowEnd = windowStart + (long)(seconds * Stopwatch.Frequency);
var latencies = new List<double>[clients];
var errors = new int[clients];
string? firstError = null;
var loops = Enumerable.Range(0, clients).Select(c => Task.Run(() => Client(c))).ToArray();

await Task.Delay(TimeSpan.FromSeconds(warmup));
var rssStart = ReadStatus(pid, "VmRSS");
var cpuStart = ReadCpuSeconds(pid);
var ownCpuStart = Process.GetCurrentProcess().TotalProcessorTime;
await Task.WhenAll(loops);
var cpuEnd = ReadCpuSeconds(pid);
var ownCpu = (Process.GetCurrentProcess().TotalProcessorTime - ownCpuStart).TotalSeconds;
var rssEnd = ReadStatus(pid, "VmRSS");
var peak = ReadStatus(pid, "VmHWM");

var all = latencies.SelectMany(l => l).Order().ToArray();
int errorCount = errors.Sum();
double Percentile(double p) => all.Length == 0 ? double.NaN : all[Math.Min(all.Length - 1, (int)Math.Ceiling(p * all.Length) - 1)];
using var stdout = Console.OpenStandardOutput();
using (var w = new Utf8JsonWriter(stdout))
{
    w.WriteStartObject();
    w.WriteString("generator", "ServeLoad");
    w.WriteString("protocol", protocol);
    w.WriteString("url", protocol == "grpc" ? grpcUri!.ToString() : url);
    w.WriteNumber("clients", clients);
    if (protocol == "grpc")
        w.WriteNumber("grpc_channels", grpcChannels);
    w.WriteNumber("rows", rows);
    w.WriteNumber("seconds", seconds);
    w.WriteNumber("checked_bodies", bodyCount);
    w.WriteNumber("requests", all.Length);
    w.WriteNumber("requests_per_s", Math.Round(all.Length / seconds, 1));
    w.WriteNumber("songs_per_s", Math.Round(all.Length * (double)rows / seconds, 1));
    WriteNumberOrNull("p50_ms", Math.Round(Percentile(0.50), 3));
    WriteNumberOrNull("p99_ms", Math.Round(Percentile(0.99), 3));
    WriteNumberOrNull("max_ms", all.Length == 0 ? double.NaN : Math.Round(all[^1], 3));
    w.WriteNumber("errors", errorCount);
    if (firstError is null)
        w.WriteNull("first_error");
    else
        w.WriteString("first_error", firstError);
    WriteNumberOrNull("server_peak_rss_mb", Megabytes(peak));
    WriteNumberOrNull("server_rss_start_mb", Megabytes(rssStart));
    WriteNumberOrNull("server_rss_end_mb", Megabytes(rssEnd));
    // The server's CPU over the measured window (the warm-up's end to the last client's end): what a request costs it.
    double cpu = cpuStart is { } c0 && cpuEnd is { } c1 ? c1 - c0 : double.NaN;
    WriteNumberOrNull("server_cpu_ms_per_request", all.Length == 0 ? double.NaN : Math.Round(cpu * 1000 / all.Length, 3));
    WriteNumberOrNull("server_cores_busy", Math.Round(cpu / seconds, 2));
    // The load generator's own CPU over the same window: on a shared two-core machine it competes with the server.
    w.WriteNumber("client_cores_busy", Math.Round(ownCpu / seconds, 2));
    w.WriteEndObject();

    void WriteNumberOrNull(string name, double value)
    {
        if (double.IsNaN(value))
            w.WriteNull(name);
        else
            w.WriteNumber(name, value);
    }
}
Console.WriteLine();
return errorCount == 0 && all.Length > 0 ? 0 : 1;

// One client: send, read the whole answer, decode and check it; latencies of the requests that end inside the window.
async Task Client(int client)
{
    var mine = latencies[client] = new List<double>(1 << 14);
    int next = client;
    while (true)
    {
        long sent = Stopwatch.GetTimestamp();
        if (sent >= windowEnd)
            return;
        string? problem;
        try
        {
            problem = CheckRange(await Infer(next++ % bodyCount, client), rows);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException or AnswerException or RpcException)
        {
            problem = $"{e.GetType().Name}: {e.Message}";
        }
        long done = Stopwatch.GetTimestamp();
        if (done < windowStart || done > windowEnd)
            continue;
        if (problem is null)
            mine.Add((done - sent) * 1000.0 / Stopwatch.Frequency);
        else
        {
            errors[client]++;
            Interlocked.CompareExchange(ref firstError, problem, null);
        }
    }
}

Task<float[]> Infer(int body, int client) => protocol switch
{
    "json" => InferJson(body),
    "binary" => InferBinary(body),
    _ => InferGrpc(body, grpc[client % grpc.Length]),
};

// REST JSON: the body's tensor in JSON, the answer's output in JSON.
async Task<float[]> InferJson(int body)
{
    using var content = new ByteArrayContent(jsonBodies[body]);
    content.Headers.ContentType = new("application/json");
    using var response = await http.PostAsync(uri, content);
    var answer = await response.Content.ReadAsByteArrayAsync();
    if (response.StatusCode != HttpStatusCode.OK)
        throw new AnswerException($"HTTP {(int)response.StatusCode}: {Head(answer)}");
    return Probabilities(answer, answer.Length, rows, binary: null);
}

// REST with the binary tensor data extension: a JSON header, then the tensor's bytes; the answer comes the same way.
async Task<float[]> InferBinary(int body)
{
    using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = new ByteArrayContent(binaryBodies[body]) };
    request.Content.Headers.ContentType = new("application/octet-stream");
    request.Headers.TryAddWithoutValidation(HeaderLengthName, headerLengths[body].ToString(CultureInfo.InvariantCulture));
    using var response = await http.SendAsync(request);
    var answer = await response.Content.ReadAsByteArrayAsync();
    if (response.StatusCode != HttpStatusCode.OK)
        throw new AnswerException($"HTTP {(int)response.StatusCode}: {Head(answer)}");
    if (!(response.Headers.TryGetValues(HeaderLengthName, out var lengths) || response.Content.Headers.TryGetValues(HeaderLengthName, out lengths))
        || !int.TryParse(lengths.FirstOrDefault(), CultureInfo.InvariantCulture, out int headerLength) || headerLength < 0 || headerLength > answer.Length)
        throw new AnswerException($"no {HeaderLengthName} within the answer's {answer.Length} bytes: {Head(answer)}");
    return Probabilities(answer, headerLength, rows, binary: answer.AsSpan(headerLength).ToArray());
}

// gRPC ModelInfer: the tensor in raw_input_contents, the answer in raw_output_contents.
async Task<float[]> InferGrpc(int body, GRPCInferenceService.GRPCInferenceServiceClient client)
{
    var reply = await client.ModelInferAsync(grpcRequests[body], deadline: DateTime.UtcNow.AddSeconds(30));
    if (reply.Outputs.Count != 1 || reply.Outputs[0].Name != "probability" || reply.Outputs[0].Datatype != "FP32"
        || reply.Outputs[0].Shape.Count != 2 || reply.Outputs[0].Shape[0] != rows || reply.Outputs[0].Shape[1] != 1)
        throw new AnswerException($"not one FP32 output 'probability' of shape [{rows},1]: {reply.Outputs}");
    if (reply.RawOutputContents.Count != 1)
        throw new AnswerException($"{reply.RawOutputContents.Count} raw_output_contents, not 1");
    return Floats(reply.RawOutputContents[0].Span, rows);
}

T Option<T>(string name, T fallback) where T : IParsable<T> =>
    options.TryGetValue(name, out var text) ? T.Parse(text, CultureInfo.InvariantCulture) : fallback;

// The answer's JSON (its first `length` bytes) must hold one output 'probability' of shape [rows,1]: its values in "data",
// or, with the binary extension, its binary_data_size in "parameters" and the values in `binary`.
static float[] Probabilities(byte[] answer, int length, int rows, byte[]? binary)
{
    try
    {
        using var document = JsonDocument.Parse(answer.AsMemory(0, length));
        if (!document.RootElement.TryGetProperty("outputs", out var outputs) || outputs.GetArrayLength() != 1)
            throw new AnswerException($"no single output: {Head(answer)}");
        var output = outputs[0];
        var shape = output.GetProperty("shape");
        if (output.GetProperty("name").GetString() != "probability" || shape.GetArrayLength() != 2 || shape[0].GetInt32() != rows || shape[1].GetInt32() != 1)
            throw new AnswerException($"not one output 'probability' of shape [{rows},1]: {Head(answer)}");
        if (binary is not null)
        {
            int size = output.GetProperty("parameters").GetProperty("binary_data_size").GetInt32();
            if (size != binary.Length)
                throw new AnswerException($"binary_data_size {size}, but {binary.Length} bytes follow the header");
            return Floats(binary, rows);
        }
        var data = output.GetProperty("data");
        if (data.GetArrayLength() != rows)
            throw new AnswerException($"{data.GetArrayLength()} outputs for {rows} rows");
        var values = new float[rows];
        int i = 0;
        foreach (var value in data.EnumerateArray())
            values[i++] = value.GetSingle();
        return values;
    }
    catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
    {
        throw new AnswerException($"bad answer ({e.Message}): {Head(answer)}");
    }
}

// rows FP32 values, little-endian.
static float[] Floats(ReadOnlySpan<byte> bytes, int rows)
{
    if (bytes.Length != rows * sizeof(float))
        throw new AnswerException($"{bytes.Length} bytes of FP32 for {rows} rows");
    var values = new float[rows];
    for (int i = 0; i < rows; i++)
        values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(i * sizeof(float))..]);
    return values;
}

// Each answer a probability: finite and in [0,1] (NaN fails the pattern).
static string? CheckRange(float[] probabilities, int rows)
{
    if (probabilities.Length != rows)
        return $"{probabilities.Length} outputs for {rows} rows";
    for (int i = 0; i < probabilities.Length; i++)
    {
        if (probabilities[i] is not (>= 0 and <= 1))
            return $"song {i}: probability {probabilities[i].ToString("R", CultureInfo.InvariantCulture)} is not in [0,1]";
    }
    return null;
}

// The same float32 bits, song by song, as the REST JSON answer (JSON's shortest round-trip text gives the bits back).
static string? SameBits(float[] reference, float[] answer)
{
    for (int i = 0; i < reference.Length; i++)
    {
        if (BitConverter.SingleToInt32Bits(reference[i]) != BitConverter.SingleToInt32Bits(answer[i]))
        {
            return $"song {i}: REST JSON says {reference[i].ToString("R", CultureInfo.InvariantCulture)},"
                + $" this protocol {answer[i].ToString("R", CultureInfo.InvariantCulture)}";
        }
    }
    return null;
}

static string Head(byte[] text) => Encoding.UTF8.GetString(text, 0, Math.Min(text.Length, 200));

static double Megabytes(long? kilobytes) => kilobytes is { } kb ? Math.Round(kb / 1024.0, 1) : double.NaN;

// User and system CPU seconds of the process so far (/proc/PID/stat fields 14 and 15, in Linux's USER_HZ of 100).
static double? ReadCpuSeconds(int pid)
{
    if (pid <= 0)
        return null;
    try
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }
    catch (IOException)
    {
        return null;
    }
}

// A line of /proc/PID/status in kB (VmRSS now, VmHWM the peak); null without a pid or once the process is gone.
static long? ReadStatus(int pid, string key)
{
    if (pid <= 0)
        return null;
    try
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return long.Parse(line.AsSpan(key.Length + 1).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
        }
    }
    catch (IOException)
    {
    }
    return null;
}

// The 15 feature columns of a CSV, found by header name (quoted fields allowed, as in the Spotify files).
static List<float[]> ReadFeatures(string path, string[] names)
{
    using var reader = new StreamReader(path);
    var header = SplitCsv(reader.ReadLine() ?? throw new InvalidDataException($"{path} is empty"));
    var columns = names.Select(n => Array.IndexOf(header, n) is var c and >= 0 ? c : throw new InvalidDataException($"{path} has no column {n}")).ToArray();
    var songs = new List<float[]>();
    while (reader.ReadLine() is { } line)
    {
        if (line.Length == 0)
            continue;
        var fields = SplitCsv(line);
        songs.Add(columns.Select(c => float.Parse(fields[c], CultureInfo.InvariantCulture)).ToArray());
    }
    return songs.Count > 0 ? songs : throw new InvalidDataException($"{path} has no rows");
}

static string[] SplitCsv(string line)
{
    var fields = new List<string>();
    var field = new StringBuilder();
    bool quoted = false;
    for (int i = 0; i < line.Length; i++)
    {
        char ch = line[i];
        if (quoted)
        {
            if (ch == '"' && i + 1 < line.Length && line[i + 1] == '"')
                field.Append(line[++i]);
            else if (ch == '"')
                quoted = false;
            else
                field.Append(ch);
        }
        else if (ch == '"')
            quoted = true;
        else if (ch == ',')
        {
            fields.Add(field.ToString());
            field.Clear();
        }
        else
            field.Append(ch);
    }
    fields.Add(field.ToString());
    return [.. fields];
}

// An answer that is not what the protocol promises: counted as an error, like a refusal.
internal sealed class AnswerException(string message) : Exception(message);

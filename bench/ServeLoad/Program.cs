// Load generator for bench/serve/load.sh: --clients concurrent loops of KServe v2 infer requests of --rows songs
// each against one loopback server, for --warmup seconds unmeasured and then --seconds measured; prints one line
// of JSON (throughput, latency percentiles, errors, the server's memory from /proc/PID/status).
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;

string[] featureNames = ["danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
    "liveness", "valence", "tempo", "duration_ms", "time_signature", "chorus_hit", "sections"];

var options = new Dictionary<string, string>();
for (int i = 0; i + 1 < args.Length; i += 2)
    options[args[i]] = args[i + 1];
if (!options.TryGetValue("--url", out var url) || !options.TryGetValue("--data", out var dataPath))
{
    Console.Error.WriteLine("usage: ServeLoad --url http://127.0.0.1:PORT/v2/models/NAME/infer --data features.csv"
        + " [--clients 64] [--seconds 10] [--rows 1] [--warmup 2] [--pid SERVERPID]");
    return 2;
}
int clients = Option("--clients", 64), rows = Option("--rows", 1), pid = Option("--pid", 0);
double seconds = Option("--seconds", 10.0), warmup = Option("--warmup", 2.0);
var uri = new Uri(url);
// Bounded and loopback only: this is a benchmark of a local server, not a load tool for other hosts.
if (!uri.IsLoopback || clients is < 1 or > 1024 || rows is < 1 or > 10_000 || seconds is <= 0 or > 600 || warmup is < 0 or > 60)
{
    Console.Error.WriteLine("ServeLoad: needs a loopback URL, 1-1024 clients, 1-10000 rows, 0-600 s measured, 0-60 s warm-up");
    return 2;
}

// Request bodies made up front, so that the clients spend their time on HTTP, not on formatting.
var songs = ReadFeatures(dataPath, featureNames);
var random = new Random(1);
var bodies = new byte[Math.Max(clients, 16)][];
for (int b = 0; b < bodies.Length; b++)
{
    var json = new StringBuilder(64 + rows * 15 * 10);
    json.Append(CultureInfo.InvariantCulture, $"{{\"id\":\"{b}\",\"inputs\":[{{\"name\":\"features\",\"shape\":[{rows},15],\"datatype\":\"FP32\",\"data\":[");
    for (int r = 0; r < rows; r++)
    {
        foreach (float value in songs[random.Next(songs.Count)])
            json.Append(value.ToString("R", CultureInfo.InvariantCulture)).Append(',');
    }
    json.Length--;
    json.Append("]}]}");
    bodies[b] = Encoding.UTF8.GetBytes(json.ToString());
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

long start = Stopwatch.GetTimestamp();
long windowStart = start + (long)(warmup * Stopwatch.Frequency), windowEnd = windowStart + (long)(seconds * Stopwatch.Frequency);
var latencies = new List<double>[clients];
var errors = new int[clients];
string? firstError = null;
var loops = Enumerable.Range(0, clients).Select(c => Task.Run(() => Client(c))).ToArray();

await Task.Delay(TimeSpan.FromSeconds(warmup));
var rssStart = ReadStatus(pid, "VmRSS");
var cpuStart = ReadCpuSeconds(pid);
await Task.WhenAll(loops);
var cpuEnd = ReadCpuSeconds(pid);
var rssEnd = ReadStatus(pid, "VmRSS");
var peak = ReadStatus(pid, "VmHWM");

var all = latencies.SelectMany(l => l).Order().ToArray();
int errorCount = errors.Sum();
double Percentile(double p) => all.Length == 0 ? double.NaN : all[Math.Min(all.Length - 1, (int)Math.Ceiling(p * all.Length) - 1)];
using var stdout = Console.OpenStandardOutput();
using (var w = new Utf8JsonWriter(stdout))
{
    w.WriteStartObject();
    w.WriteString("url", url);
    w.WriteNumber("clients", clients);
    w.WriteNumber("rows", rows);
    w.WriteNumber("seconds", seconds);
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

// One client: send, read the whole answer, check it; latencies of the requests that end inside the window.
async Task Client(int client)
{
    var mine = latencies[client] = new List<double>(1 << 14);
    int next = client;
    while (true)
    {
        long sent = Stopwatch.GetTimestamp();
        if (sent >= windowEnd)
            return;
        var body = bodies[next++ % bodies.Length];
        string? problem;
        try
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new("application/json");
            using var response = await http.PostAsync(uri, content);
            var answer = await response.Content.ReadAsByteArrayAsync();
            problem = response.StatusCode == HttpStatusCode.OK ? CheckAnswer(answer, rows) : $"HTTP {(int)response.StatusCode}: {Head(answer)}";
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
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

T Option<T>(string name, T fallback) where T : IParsable<T> =>
    options.TryGetValue(name, out var text) ? T.Parse(text, CultureInfo.InvariantCulture) : fallback;

// The answer must hold one output of shape [rows,1] with rows probabilities in [0,1].
static string? CheckAnswer(byte[] answer, int rows)
{
    try
    {
        using var document = JsonDocument.Parse(answer);
        if (!document.RootElement.TryGetProperty("outputs", out var outputs) || outputs.GetArrayLength() != 1)
            return $"no single output: {Head(answer)}";
        var data = outputs[0].GetProperty("data");
        if (data.GetArrayLength() != rows)
            return $"{data.GetArrayLength()} outputs for {rows} rows";
        foreach (var value in data.EnumerateArray())
        {
            if (value.GetDouble() is not (>= 0 and <= 1))
                return $"probability out of [0,1]: {value}";
        }
        return null;
    }
    catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
    {
        return $"bad answer ({e.Message}): {Head(answer)}";
    }
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

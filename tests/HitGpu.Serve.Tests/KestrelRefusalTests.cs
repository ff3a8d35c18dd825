// What Kestrel refuses itself. Before the app sees a request (a request line or headers too long, a line that
// is not HTTP, no Host) Kestrel answers alone, with no body, and closes the connection: the app cannot write
// a JSON line there, but the request log says each. A body Kestrel refuses while the app reads it (bad chunks,
// too slow) is answered by the app: a JSON line, and one log line. Raw TCP, since HttpClient writes none of
// these. Its own server and log (the study model file of the Nn tests), beside the shared one's tests.
using System.Net.Sockets;
using System.Text;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

public sealed class KestrelRefusalServer : IAsyncLifetime
{
    public ComputeDevice Device { get; } = ComputeDevice.Open(AcceleratorKind.Cpu);
    public HitServer Server { get; private set; } = null!;
    private readonly StringWriter log = new();
    private TextWriter? synchronizedLog;

    public string LogText { get { lock (synchronizedLog!) return log.ToString(); } }

    public async ValueTask InitializeAsync()
    {
        synchronizedLog = TextWriter.Synchronized(log);
        var model = ModelFile.Load(Path.Combine(AppContext.BaseDirectory, "Fixtures", "study.hitgpu"));
        Server = await HitServer.StartAsync(model, Device, new ServeOptions { Name = "study", Port = 0, RequestLog = synchronizedLog });
    }

    /// <summary>Sends bytes as they are on a connection of their own; the answer until the server closes it (or <paramref name="wait"/> passes).</summary>
    public async Task<string> Raw(string request, TimeSpan? wait = null)
    {
        var address = new Uri(Server.Addresses[0]);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        var answer = new MemoryStream();
        var buffer = new byte[1 << 16];
        using var patience = new CancellationTokenSource(wait ?? TimeSpan.FromSeconds(20));
        int read;
        while ((read = await stream.ReadAsync(buffer, patience.Token)) > 0)
            answer.Write(buffer, 0, read);
        return Encoding.ASCII.GetString(answer.ToArray());
    }

    /// <summary>The log's lines once one has <paramref name="text"/> (the log is written by a task of its own).</summary>
    public async Task<string[]> LogLinesWith(string text)
    {
        for (int i = 0; i < 100 && !LogText.Contains(text, StringComparison.Ordinal); i++)
            await Task.Delay(50);
        return LogText.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        Device.Dispose();
    }
}

public sealed class KestrelRefusalTests(KestrelRefusalServer server) : IClassFixture<KestrelRefusalServer>
{
    public static TheoryData<string, string, string> BeforeTheApp() => new()
    {
        { "GET /" + new string('a', 20_000) + " HTTP/1.1\r\nHost: localhost\r\n\r\n", "414 URI Too Long",
            "status=414 refused by Kestrel: Request line too long." },
        { "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + new string('b', 40_000) + "\r\n\r\n", "431 Request Header Fields Too Large",
            "status=431 refused by Kestrel: Request headers too long." },
        { "NOT HTTP AT ALL\r\n\r\n", "400 Bad Request", "status=400 refused by Kestrel: Invalid request line" },
        { "GET /v2 HTTP/1.1\r\n\r\n", "400 Bad Request", "status=400 refused by Kestrel: Request is missing Host header." },
    };

    [Theory]
    [MemberData(nameof(BeforeTheApp))]
    public async Task A_request_refused_before_the_app_sees_it_is_kestrels_empty_answer_and_a_log_line(string request, string status, string logged)
    {
        string answer = await server.Raw(request);
        Assert.StartsWith($"HTTP/1.1 {status}\r\n", answer);
        Assert.Contains("Content-Length: 0\r\n", answer);
        Assert.Contains("Connection: close\r\n", answer);
        Assert.Contains(await server.LogLinesWith(logged), line => line.Contains(" - - rows=- " + logged, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_body_kestrel_refuses_while_the_app_reads_it_is_a_json_line_and_one_log_line()
    {
        string answer = await server.Raw("POST /predict?bad-chunks HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\nTransfer-Encoding: " +
            "chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 400 Bad Request\r\n", answer);
        Assert.Contains("Content-Type: application/json\r\n", answer);
        Assert.Equal("Bad chunk size data.", Error(answer[(answer.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]));
        await server.LogLinesWith("/predict?bad-chunks");
        await Task.Delay(200); // Kestrel logs its refusal after the app's line: give a second line the time to come
        var lines = server.LogText.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines, line => line.Contains("POST /predict?bad-chunks rows=- status=400", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, line => line.Contains("refused by Kestrel: Bad chunk size data.", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_body_sent_too_slowly_is_a_408_json_line()
    {
        // Kestrel's MinRequestBodyDataRate: 240 bytes/s after a grace of 5 s.
        string answer = await
            server.Raw("POST /predict?slow HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\nContent-Length: 5000\r\n\r\ndanceability",
            TimeSpan.FromSeconds(30));
        Assert.StartsWith("HTTP/1.1 408 Request Timeout\r\n", answer);
        Assert.StartsWith("Reading the request body timed out", Error(answer[(answer.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]));
        Assert.Contains(await server.LogLinesWith("/predict?slow"), line => line.Contains("POST /predict?slow rows=- status=408", StringComparison.Ordinal));
    }
}

// Slow senders against real clients: bodies trickled a few bytes at a time (raw sockets) hold upload slots,
// never the slots requests are scored in, and are refused 503 (no upload slot) or 408 (too slow, too long),
// while real requests keep being answered. Short budgets, so that the test takes seconds.
using System.Net;
using System.Net.Sockets;
using System.Text;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class UploadTests(ServerFixture server)
{
    private const int Tricklers = 260;

    [Fact]
    public async Task Trickled_uploads_are_refused_503_or_408_while_real_requests_are_answered()
    {
        var text = new StringWriter();
        var log = TextWriter.Synchronized(text);
        var options = new ServeOptions
        {
            RequestLog = log,
            Name = "hits", Port = 0, MaxInFlight = 16, MaxUploads = 32, // more slow senders than scoring slots
            MinBodyBytesPerSecond = 1024, BodyRateGrace = TimeSpan.FromSeconds(3), BodyTimeout = TimeSpan.FromSeconds(4),
        };
        await using var guarded = await server.StartAsync(server.Model, options);
        using var client = ServerFixture.ClientOf(guarded);
        var address = new Uri(guarded.Addresses[0]);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var tricklers = Enumerable.Range(0, Tricklers).Select(i => Trickle(address, i % 2 == 0 ? "/v2/models/hits/infer" : "/predict", stop.Token)).ToArray();

        // Every upload slot is held by a trickler before the real requests come (checked after them).
        for (int i = 0; i < 100 && guarded.Endpoints.UploadsInProgress < options.MaxUploads; i++)
            await Task.Delay(25);
        int held = guarded.Endpoints.UploadsInProgress;

        var features = Features(10, 3);
        var expected = server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features });
        for (int i = 0; i < 20; i++)
        {
            var (status, body, _) = await Post(client, "/v2/models/hits/infer", Infer(features));
            Assert.True(status == HttpStatusCode.OK, $"real request {i} while the uploads trickle: {(int)status} {body}");
            Assert.Equal(expected, Probabilities(body));
            var records = await Post(client, "/predict", Records(features));
            Assert.True(records.Status == HttpStatusCode.OK, $"real records {i} while the uploads trickle: {(int)records.Status} {records.Body}");
            if (i % 5 == 0)
                Assert.Equal("200", await HeadersThenBody(address, Infer(features)));
        }

        Assert.Equal(options.MaxUploads, held);

        var answers = await Task.WhenAll(tricklers);
        Assert.All(answers, answer => Assert.True(answer is "503" or "408", $"a trickler got '{answer}', not 503 or 408"));
        Assert.Contains("408", answers); // those that held a slot were ended by the rate or the deadline
        Assert.Equal(0, guarded.Endpoints.UploadsInProgress);

        // One log line per trickler, the app's: Kestrel's refusal of a refused body's unread rest is not a second.
        await Task.Delay(500);
        string[] lines;
        lock (log)
            lines = text.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.DoesNotContain(lines, line => line.Contains("refused by Kestrel", StringComparison.Ordinal));
        Assert.Equal(Tricklers, lines.Count(line => line.Contains(" rows=- status=503 ", StringComparison.Ordinal)
            || line.Contains(" rows=- status=408 ", StringComparison.Ordinal)));
        Assert.Equal(2 * 20 + 4, lines.Count(line => line.Contains(" rows=3 status=200 ", StringComparison.Ordinal))); // HttpClient's, and the split ones
    }

    /// <summary>A request whose body comes in a write of its own, 20 ms after its headers (as Python's http.client sends); its status.</summary>
    private static async Task<string> HeadersThenBody(Uri address, string json)
    {
        using var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync(address.Host, address.Port);
        var stream = tcp.GetStream();
        byte[] body = Encoding.UTF8.GetBytes(json);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"POST /v2/models/hits/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n"));
        await Task.Delay(20);
        await stream.WriteAsync(body);
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        string head = await Answer(stream, patience.Token);
        return head.StartsWith("HTTP/1.1 ", StringComparison.Ordinal) ? head[9..12] : "none";
    }

    /// <summary>
    /// A request whose headers announce 4,000 bytes and whose body comes 2 bytes every 100 ms; the status of
    /// the answer the server gives (or "none" if the connection ends without one).
    /// </summary>
    private static async Task<string> Trickle(Uri address, string path, CancellationToken stop)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port, stop);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n["), stop);
        var answer = Answer(stream, stop);
        try
        {
            while (!answer.IsCompleted)
            {
                await stream.WriteAsync("  "u8.ToArray(), stop);
                await Task.WhenAny(answer, Task.Delay(100, stop));
            }
        }
        catch (IOException)
        {
            // the server closed the connection after its answer
        }
        string head = await answer;
        return head.StartsWith("HTTP/1.1 ", StringComparison.Ordinal) ? head[9..12] : "none";
    }

    private static async Task<string> Answer(NetworkStream stream, CancellationToken stop)
    {
        var buffer = new byte[4096];
        try
        {
            int read = await stream.ReadAsync(buffer, stop);
            return Encoding.ASCII.GetString(buffer, 0, read);
        }
        catch (IOException)
        {
            return "";
        }
    }
}

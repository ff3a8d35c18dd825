// Dynamic batching: concurrent requests within the window are scored in one launch, and each gets exactly
// the answer it gets alone (bit for bit, in its order), whatever else was scored beside it.
using System.Net;
using System.Text.RegularExpressions;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class BatchingTests(ServerFixture server)
{
    /// <summary>A second server on the fixture's model and device, with its own window.</summary>
    private Task<HitServer> Start(TimeSpan window, TextWriter? log = null) =>
        server.StartAsync(server.Model, new ServeOptions { Name = "hits", Port = 0, BatchWindow = window, RequestLog = log });

    [Fact]
    public async Task Concurrent_requests_share_launches_and_each_gets_its_answer_alone_bit_for_bit()
    {
        await using var batching = await Start(TimeSpan.FromMilliseconds(200));
        using var client = ServerFixture.ClientOf(batching);
        var sizes = Enumerable.Range(0, 48).Select(i => 1 + i * 7 % 13).ToArray();
        var firsts = sizes.Select((_, i) => i * 37).ToArray();
        var alone = sizes.Select((rows, i) => server.Model.PredictProbabilities(server.Device,
            new SongTable { Source = "alone", Features = Features(firsts[i], rows) })).ToArray();
        long launches = batching.Endpoints.Queue.Launches;
        var answers = await Task.WhenAll(sizes.Select((rows, i) => Post(client, "/v2/models/hits/infer", Infer(Features(firsts[i], rows)))));
        long used = batching.Endpoints.Queue.Launches - launches;
        TestContext.Current.TestOutputHelper?.WriteLine($"{sizes.Length} requests, {sizes.Sum()} songs, {used} launches");
        for (int i = 0; i < sizes.Length; i++)
        {
            Assert.Equal(HttpStatusCode.OK, answers[i].Status);
            Assert.Equal(alone[i], Probabilities(answers[i].Body));
        }
        Assert.True(used < sizes.Length / 2, $"{sizes.Length} concurrent requests took {used} launches: the window did not batch them");
    }

    [Fact]
    public async Task A_batch_closes_at_its_row_limit_and_explanations_and_bad_requests_beside_it_change_no_answer()
    {
        await using var batching = await server.StartAsync(server.Model, new ServeOptions
            { Name = "hits", Port = 0, BatchWindow = TimeSpan.FromMilliseconds(100), MaxBatchRows = 40 });
        using var client = ServerFixture.ClientOf(batching);
        var tasks = new List<Task<(HttpStatusCode Status, string Body, string? Type)>>();
        var expected = new List<float[]?>();
        for (int i = 0; i < 30; i++)
        {
            var features = Features(i * 11, 9);
            if (i % 5 == 2)
            {
                tasks.Add(Post(client, "/predict?explain=true", Records(features)));
                expected.Add(null);
            }
            else if (i % 7 == 3)
            {
                tasks.Add(Post(client, "/v2/models/hits/infer", "{\"inputs\": [{\"name\": \"features\"}]}"));
                expected.Add(null);
            }
            else
            {
                tasks.Add(Post(client, "/v2/models/hits/infer", Infer(features)));
                expected.Add(server.Model.PredictProbabilities(server.Device, new SongTable { Source = "alone", Features = features }));
            }
        }
        var answers = await Task.WhenAll(tasks);
        for (int i = 0; i < answers.Length; i++)
        {
            if (expected[i] is { } probabilities)
            {
                Assert.Equal(HttpStatusCode.OK, answers[i].Status);
                Assert.Equal(probabilities, Probabilities(answers[i].Body));
            }
            else
            {
                Assert.Equal(i % 5 == 2 ? HttpStatusCode.OK : HttpStatusCode.BadRequest, answers[i].Status);
            }
        }
    }

    [Fact]
    public async Task Without_a_window_a_lone_request_is_scored_at_once_and_gets_the_same_answer()
    {
        await using var immediate = await Start(TimeSpan.Zero);
        using var client = ServerFixture.ClientOf(immediate);
        var features = Features(123, 5);
        var (status, body, _) = await Post(client, "/v2/models/hits/infer", Infer(features));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(server.Model.PredictProbabilities(server.Device, new SongTable { Source = "alone", Features = features }), Probabilities(body));
    }

    [Fact]
    public async Task Each_request_is_logged_in_one_line_with_method_path_songs_status_and_milliseconds()
    {
        var log = new StringWriter();
        var synchronized = TextWriter.Synchronized(log);
        await using (var logged = await Start(TimeSpan.Zero, synchronized))
        {
            using var client = ServerFixture.ClientOf(logged);
            await Post(client, "/v2/models/hits/infer", Infer(Features(0, 3)));
            await Post(client, "/predict?explain=true", Records(Features(0, 2)));
            await Post(client, "/predict", "not,a,song\n1,2,3\n", "text/csv");
            await Get(client, "/v2/models/nope");
            await Get(client, "/v2/health/ready");
        } // disposing the server writes out the log
        string[] lines = log.ToString().TrimEnd('\n').Split('\n');
        Assert.Equal(5, lines.Length);
        var line = new
            Regex(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?<method>GET|POST) (?<path>\S+) rows=(?<rows>\d+|-) status=(?<status>\d{3}) \d+\.\d\d ms$");
        var fields = lines.Select(l => line.Match(l)).Select(m => Assert.IsType<Match>(m.Success ? m : null)).Select(m
            => (m.Groups["method"].Value, m.Groups["path"].Value, m.Groups["rows"].Value, m.Groups["status"].Value)).ToArray();
        Assert.Equal(("POST", "/v2/models/hits/infer", "3", "200"), fields[0]);
        Assert.Equal(("POST", "/predict?explain=true", "2", "200"), fields[1]);
        Assert.Equal(("POST", "/predict", "-", "400"), fields[2]);
        Assert.Equal(("GET", "/v2/models/nope", "-", "404"), fields[3]);
        Assert.Equal(("GET", "/v2/health/ready", "-", "200"), fields[4]);
    }
}

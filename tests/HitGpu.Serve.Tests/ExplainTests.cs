// Explanations within their budget: cancelled when the client goes (logged 499), at most --max-explain-songs
// (413), never on more than one scorer (a plain request is scored while two explanations run), and cancelled
// by a stop within the drain (503), so that no explanation keeps a stopping server alive.
using System.Net;
using System.Text.Json.Nodes;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class ExplainTests(ServerFixture server)
{
    /// <summary>Songs enough that their explanation takes seconds (the embedded songs, repeated).</summary>
    private static float[] ManySongs(int rows) =>
        [.. Enumerable.Range(0, rows).SelectMany(r => Features(r % ServerFixture.Songs.Count, 1))];

    [Fact]
    public async Task An_explanation_whose_client_goes_stops_and_is_logged_499()
    {
        var text = new StringWriter();
        var log = TextWriter.Synchronized(text);
        var options = new ServeOptions { Name = "hits", Port = 0, MaxRows = 5000, MaxExplainSongs = 5000, RequestLog = log };
        await using var own = await server.StartAsync(server.Model, options);
        using var client = ServerFixture.ClientOf(own);
        int songs = 2000, block = Explain.SongsPerBlock(own.Endpoints.Options.ExplainSteps);
        using var gone = new CancellationTokenSource();
        using var content = new StringContent(Records(ManySongs(songs)), System.Text.Encoding.UTF8, "application/json");
        var request = client.PostAsync("/predict?explain=true&client-goes", content, gone.Token);
        for (int i = 0; i < 400 && own.Endpoints.Queue.ExplainedSongs == 0; i++) // its first block done: it is under way
            await Task.Delay(10);
        gone.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);

        string line = "";
        for (int i = 0; i < 200 && !(line = Read(text, log)).Contains("client-goes", StringComparison.Ordinal); i++)
            await Task.Delay(50);
        Assert.Contains($"POST /predict?explain=true&client-goes rows={songs} status=499 ", line);
        // The handler has ended: the block running when the client went may still finish, no other starts.
        await Task.Delay(1000);
        long explained = own.Endpoints.Queue.ExplainedSongs;
        Assert.True(explained <= 3 * block, $"{explained} of the {songs} songs were explained after the client went");
    }

    private static string Read(StringWriter text, TextWriter log)
    {
        lock (log)
            return text.ToString();
    }

    [Fact]
    public async Task A_plain_request_is_scored_while_two_explanations_run()
    {
        var features = Features(3, 3);
        long before = server.Server.Endpoints.Queue.ExplainedSongs;
        var first = Post(server.Client, "/predict?explain=true", Records(ManySongs(400))); // two blocks, seconds each
        var second = Post(server.Client, "/predict?explain=true", Records(ManySongs(400)));
        await Task.Delay(300);
        Assert.False(first.IsCompleted || second.IsCompleted, "an explanation ended before the plain request came");
        var (status, body, _) = await Post(server.Client, "/v2/models/hits/infer", Infer(features));
        long explained = server.Server.Endpoints.Queue.ExplainedSongs - before;
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.True(explained < 400, $"the plain request waited for {explained} songs to be explained: explanations held every scorer");
        Assert.Equal(server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features }), Probabilities(body));
        // Explained a block at a time, each answer is the one a single call gives.
        var expected = Explain.IntegratedGradients(server.Device, server.Model, new SongTable { Source = "test", Features = ManySongs(400) });
        foreach (var answer in await Task.WhenAll(first, second))
        {
            Assert.Equal(HttpStatusCode.OK, answer.Status);
            var records = JsonNode.Parse(answer.Body)!.AsArray();
            Assert.Equal(expected.Probabilities, records.Select(r => r!["probability"]!.GetValue<float>()));
            for (int s = 0; s < records.Count; s += 37)
                Assert.Equal(expected.Of(s).ToArray(), SongData.FeatureNames.Select(n => records[s]!["contributions"]![n]!.GetValue<float>()));
        }
    }

    [Fact]
    public async Task With_one_scorer_as_on_a_gpu_plain_scoring_runs_between_an_explanations_blocks()
    {
        await using var queue = new ScoringQueue([server.Device], server.Model, TimeSpan.Zero, 4096, 64);
        using var cancel = new CancellationTokenSource();
        var explanation = queue.Explain(new SongTable { Source = "test", Features = ManySongs(1000) }, cancel.Token);
        await Task.Delay(300); // in its first block
        var features = Features(3, 3);
        var probabilities = await queue.Score(features);
        long explained = queue.ExplainedSongs;
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => explanation);
        Assert.True(explained < 1000, $"the plain request waited for the whole explanation ({explained} songs)");
        Assert.Equal(server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features }), probabilities);
    }

    [Fact]
    public async Task More_songs_than_an_explanation_may_take_are_413()
    {
        int max = server.Server.Endpoints.Options.MaxExplainSongs;
        var (status, body, _) = await Post(server.Client, "/predict?explain=true", Records(ManySongs(max + 1)));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal($"request body: {max + 1} songs to explain, more than the {max} an explained request may send (ServeOptions.MaxExplainSongs); "
            + "send fewer, or leave out explain", Error(body));
        Assert.Equal(HttpStatusCode.OK, (await Post(server.Client, "/predict", Records(ManySongs(max + 1)))).Status);
    }

    [Fact]
    public async Task A_stop_cancels_an_explanation_within_the_drain_with_a_503()
    {
        var drain = TimeSpan.FromSeconds(2);
        var options = new ServeOptions { Name = "hits", Port = 0, MaxRows = 5000, MaxExplainSongs = 5000, DrainTimeout = drain };
        var own = await server.StartAsync(server.Model, options);
        using var client = ServerFixture.ClientOf(own);
        var request = Post(client, "/predict?explain=true", Records(ManySongs(4000))); // half a minute of work on two cores
        for (int i = 0; i < 400 && own.Endpoints.Queue.ExplainedSongs == 0; i++)
            await Task.Delay(10);
        await own.StopAsync();
        var (status, body, _) = await request; // answered before the drain ended: Kestrel would have closed the connection
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.StartsWith("the server is stopping: explanations still running 1 s into the stop are cancelled", Error(body));
        await own.DisposeAsync();
        Assert.True(own.Endpoints.Queue.ExplainedSongs < 4000, "the explanation ran to its end");
    }
}

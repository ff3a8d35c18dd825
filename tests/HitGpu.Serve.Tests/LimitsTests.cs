// What a server must refuse so that no client can take it down or starve the others: compressed bodies that
// would unfold past the limits, shapes that claim more than they carry, more requests than it takes at once,
// requests after a stop; and the JSON line for every other answer routing gives (404, 405).
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class LimitsTests(ServerFixture server)
{
    private HttpClient Client => server.Client;

    [Fact]
    public async Task A_gzip_body_is_refused_not_unfolded()
    {
        using var packed = new MemoryStream();
        using (var gzip = new GZipStream(packed, CompressionLevel.SmallestSize, leaveOpen: true))
            gzip.Write(System.Text.Encoding.UTF8.GetBytes(Csv(Features(0, 50))));
        using var content = new ByteArrayContent(packed.ToArray());
        content.Headers.ContentType = new MediaTypeHeaderValue("text/csv");
        using var response = await Client.PostAsync("/predict", content);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("request body: gzip-compressed: send the CSV as text (the body limit holds for what is sent)",
            Error(await response.Content.ReadAsStringAsync()));
    }

    [Fact]
    public async Task A_shape_that_claims_more_songs_than_its_data_holds_is_counted_first()
    {
        string request = Infer(Features(0, 1)).Replace("\"shape\":[1,15]", "\"shape\":[4000,15]");
        var (status, body, _) = await Post(Client, "/v2/models/hits/infer", request);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("request body: input 'features': data has 15 values, the shape [4000, 15] needs 60000", Error(body));
    }

    [Fact]
    public async Task Json_with_a_byte_order_mark_and_names_in_capitals_is_read()
    {
        var features = Features(60, 2);
        var records = JsonNode.Parse(Records(features))!.AsArray();
        records[0]!["Track"] = "First";
        records[0]!["ARTIST"] = "Someone";
        byte[] body = [0xEF, 0xBB, 0xBF, .. System.Text.Encoding.UTF8.GetBytes(records.ToJsonString())];
        using var content = new ByteArrayContent(body); // no type: read by its first character, past the mark
        using var response = await Client.PostAsync("/predict", content);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answers = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsArray();
        Assert.Equal("First", answers[0]!["track"]!.GetValue<string>());
        Assert.Equal("Someone", answers[0]!["artist"]!.GetValue<string>());
        Assert.Equal(server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features }),
            answers.Select(a => a!["probability"]!.GetValue<float>()));
    }

    [Theory]
    [InlineData("GET", "/v2/models/hits/infer", 405, "GET is not allowed on /v2/models/hits/infer")]
    [InlineData("DELETE", "/predict", 405, "DELETE is not allowed on /predict")]
    [InlineData("GET", "/favicon.ico", 404, "no endpoint GET /favicon.ico")]
    [InlineData("POST", "/v2/models/a.b", 405, "POST is not allowed on /v2/models/a.b")]
    public async Task Routing_answers_are_json_error_lines_too(string method, string path, int status, string expected)
    {
        var answer = await Send(Client, new HttpMethod(method), path);
        Assert.Equal(status, (int)answer.Status);
        Assert.Equal("application/json", answer.Type);
        Assert.StartsWith(expected, Error(answer.Body));
    }

    [Fact]
    public async Task More_requests_than_the_server_takes_at_once_are_503_and_the_rest_answered()
    {
        await using var small = await server.StartAsync(server.Model, new ServeOptions { Name = "hits", Port = 0, MaxInFlight = 1 });
        using var client = ServerFixture.ClientOf(small);
        var slow = Post(client, "/predict?explain=true", Records(Features(100, 300))); // explanations of 300 songs take a while
        await Task.Delay(200);
        Assert.False(slow.IsCompleted, "the first request finished before the second came");
        var (status, body, _) = await Post(client, "/v2/models/hits/infer", Infer(Features(0, 1)));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.StartsWith("busy: 1 requests with songs in flight, the most this server takes (ServeOptions.MaxInFlight)", Error(body));
        Assert.Equal(HttpStatusCode.OK, (await slow).Status);
        Assert.Equal(HttpStatusCode.OK, (await Post(client, "/v2/models/hits/infer", Infer(Features(0, 1)))).Status);
        Assert.Equal(HttpStatusCode.OK, (await Get(client, "/v2/health/ready")).Status); // health is never limited
    }

    [Fact]
    public async Task Scoring_asked_after_the_stop_fails_as_stopping_which_the_server_answers_503()
    {
        var queue = new ScoringQueue([server.Device], server.Model, TimeSpan.Zero, 64, 8);
        await queue.DisposeAsync();
        await Assert.ThrowsAsync<ScoringQueue.StoppingException>(() => queue.Score(Features(0, 1)));
    }
}

// Requests as a client writes them, and their answers read back.
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace HitGpu.Serve.Tests;

public static class Http
{
    public static async Task<(HttpStatusCode Status, string Body, string? Type)>
        Send(HttpClient client, HttpMethod method, string path, string? body = null, string? type = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
            request.Content = new StringContent(body, Encoding.UTF8, type ?? "application/json");
        using var response = await client.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(), response.Content.Headers.ContentType?.MediaType);
    }

    public static Task<(HttpStatusCode Status, string Body, string? Type)> Get(HttpClient client, string path) => Send(client, HttpMethod.Get, path);

    public static Task<(HttpStatusCode Status, string Body, string? Type)> Post(HttpClient client, string path, string body, string? type = null) =>
        Send(client, HttpMethod.Post, path, body, type);

    /// <summary>Rows of the embedded songs, from <paramref name="first"/> on.</summary>
    public static float[] Features(int first, int rows) => ServerFixture.Songs.Features[(first * SongData.FeatureCount)..((first + rows)
        * SongData.FeatureCount)];

    /// <summary>An inference request for these songs, numbers written as round-trip floats.</summary>
    public static string Infer(float[] features, string? id = null) =>
        new JsonObject
        {
            ["id"] = id,
            ["inputs"] = new JsonArray(new JsonObject
            {
                ["name"] = "features",
                ["shape"] = new JsonArray(features.Length / SongData.FeatureCount, SongData.FeatureCount),
                ["datatype"] = "FP32",
                ["data"] = new JsonArray([.. features.Select(v => JsonValue.Create(v))]),
            }),
        }.ToJsonString();

    /// <summary>The probabilities of an inference answer.</summary>
    public static float[] Probabilities(string answer) =>
        [.. JsonNode.Parse(answer)!["outputs"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<float>())];

    /// <summary>Songs as JSON records, the features by name.</summary>
    public static string Records(float[] features) =>
        new JsonArray([.. Enumerable.Range(0, features.Length / SongData.FeatureCount).Select(r =>
        {
            var song = new JsonObject();
            for (int f = 0; f < SongData.FeatureCount; f++)
                song[SongData.FeatureNames[f]] = features[r * SongData.FeatureCount + f];
            return (JsonNode)song;
        })]).ToJsonString();

    /// <summary>Songs as a CSV with a header, the columns in the given order.</summary>
    public static string Csv(float[] features, int[]? order = null)
    {
        order ??= [.. Enumerable.Range(0, SongData.FeatureCount)];
        var text = new StringBuilder(string.Join(",", order.Select(f => SongData.FeatureNames[f]))).Append('\n');
        for (int r = 0; r < features.Length / SongData.FeatureCount; r++)
            text.Append(string.Join(",", order.Select(f => features[r * SongData.FeatureCount + f].ToString("R", CultureInfo.InvariantCulture)))).Append('\n');
        return text.ToString();
    }

    /// <summary>An error answer: one JSON object with one line in "error"; returns that line.</summary>
    public static string Error(string body)
    {
        var node = JsonNode.Parse(body)!.AsObject();
        Assert.Single(node);
        string message = node["error"]!.GetValue<string>();
        Assert.False(string.IsNullOrWhiteSpace(message));
        Assert.DoesNotContain('\n', message);
        return message;
    }
}

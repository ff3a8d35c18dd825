// /predict, the endpoint for people's habits: CSV as `hitgpu predict` reads it, answered as it writes it
// (byte for byte), JSON records answered as records, ?explain=true as `hitgpu explain`; refusals in the CLI's words.
using System.Net;
using System.Text.Json.Nodes;
using static HitGpu.Nn.Tests.CliRunner;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class PredictTests(ServerFixture server)
{
    private HttpClient Client => server.Client;

    private string File(string name, string text)
    {
        string path = Path.Combine(server.Folder, name);
        System.IO.File.WriteAllText(path, text);
        return path;
    }

    /// <summary>The 90s file's first songs as it is written: track, artist, uri, the features, target.</summary>
    private static string Head(int rows) => string.Join("\n", System.Text.Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n').Take(rows
        + 1)) + "\n";

    [Fact]
    public async Task A_csv_is_answered_byte_for_byte_as_hitgpu_predict_writes_it()
    {
        string csv = Head(120);
        var cli = Run("predict", "--model", server.ModelPath, "--data", File("head.csv", csv));
        Assert.Equal(0, cli.Code);
        var (status, body, type) = await Post(Client, "/predict", csv, "text/csv");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("text/csv", type);
        Assert.Equal(cli.Output, body);
    }

    [Fact]
    public async Task A_csv_without_names_in_another_column_order_and_separator_is_answered_by_row()
    {
        var features = Features(300, 25);
        int[] order = [14, 3, 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        string csv = Csv(features, order).Replace(',', ';');
        var cli = Run("predict", "--model", server.ModelPath, "--data", File("reordered.csv", csv));
        var (status, body, _) = await Post(Client, "/predict", csv, "text/csv");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.StartsWith("row,probability,prediction\n1,", body);
        Assert.Equal(cli.Output, body);
    }

    [Fact]
    public async Task Json_records_are_answered_as_records_with_the_library_probability_and_verdict()
    {
        var features = Features(50, 40);
        var records = JsonNode.Parse(Records(features))!.AsArray();
        records[3]!["track"] = "Song, with a comma";
        records[3]!["artist"] = "Someone";
        records[5]!["Energy"] = records[5]!["energy"]!.DeepClone(); // names in any case, as CSV headers
        records[5]!.AsObject().Remove("energy");
        records[7]!["popularity"] = 80; // keys that are not features are ignored, as CSV columns are
        var (status, body, type) = await Post(Client, "/predict", records.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("application/json", type);
        var answers = JsonNode.Parse(body)!.AsArray();
        var expected = server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features });
        Assert.Equal(expected, answers.Select(a => a!["probability"]!.GetValue<float>()));
        Assert.Equal(expected.Select(p => p > 0.5f ? "Hit" : "Not a Hit"), answers.Select(a => a!["prediction"]!.GetValue<string>()));
        Assert.Equal("Song, with a comma", answers[3]!["track"]!.GetValue<string>());
        Assert.Equal("Someone", answers[3]!["artist"]!.GetValue<string>());
        Assert.Null(answers[4]!["track"]);
    }

    [Fact]
    public async Task One_record_is_answered_with_one_object_and_a_body_without_a_type_is_read_by_its_first_character()
    {
        var features = Features(9, 1);
        string record = JsonNode.Parse(Records(features))![0]!.ToJsonString();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/predict") { Content = new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(record)) };
        using var response = await Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
        Assert.Equal(server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features })[0],
            answer["probability"]!.GetValue<float>());
    }

    [Fact]
    public async Task Explained_records_carry_the_contributions_hitgpu_explain_computes()
    {
        var features = Features(200, 6);
        var (status, body, _) = await Post(Client, "/predict?explain=true", Records(features));
        Assert.Equal(HttpStatusCode.OK, status);
        var expected = Explain.IntegratedGradients(server.Device, server.Model, new SongTable { Source = "test", Features = features });
        var answers = JsonNode.Parse(body)!.AsArray();
        for (int i = 0; i < answers.Count; i++)
        {
            Assert.Equal(expected.Probabilities[i], answers[i]!["probability"]!.GetValue<float>());
            Assert.Equal(expected.BaselineProbability, answers[i]!["baseline_probability"]!.GetValue<float>());
            var contributions = answers[i]!["contributions"]!.AsObject();
            Assert.Equal(SongData.FeatureNames, contributions.Select(c => c.Key));
            Assert.Equal(expected.Of(i).ToArray(), contributions.Select(c => c.Value!.GetValue<float>()));
        }
    }

    [Fact]
    public async Task An_explained_csv_has_the_columns_and_values_of_hitgpu_explain_beside_the_verdict()
    {
        string csv = Head(8);
        var cli = Run("explain", "--model", server.ModelPath, "--data", File("explain.csv", csv));
        Assert.Equal(0, cli.Code);
        var (status, body, _) = await Post(Client, "/predict?explain=1", csv, "text/csv");
        Assert.Equal(HttpStatusCode.OK, status);
        var served = body.TrimEnd('\n').Split('\n');
        var expected = cli.Output.TrimEnd('\n').Split('\n');
        Assert.Equal(expected.Length, served.Length);
        Assert.StartsWith("track,artist,probability,prediction,baseline_probability,danceability,", served[0]);
        for (int i = 0; i < served.Length; i++)
        {
            // The same fields, with the verdict between the probability and the baseline.
            var fields = Fields(served[i]);
            fields.RemoveAt(3);
            Assert.Equal(Fields(expected[i]), fields);
        }
    }

    /// <summary>A CSV line's fields, quoted ones (track names with commas) kept whole.</summary>
    private static List<string> Fields(string line)
    {
        var fields = new List<string>();
        var field = new System.Text.StringBuilder();
        bool quoted = false;
        for (int i = 0; i < line.Length; i++)
        {
            char c = line[i];
            if (quoted && c == '"' && i + 1 < line.Length && line[i + 1] == '"')
                field.Append(line[++i]);
            else if (c == '"')
                quoted = !quoted;
            else if (c == ',' && !quoted)
            {
                fields.Add(field.ToString());
                field.Clear();
            }
            else
                field.Append(c);
        }
        fields.Add(field.ToString());
        return fields;
    }

    /// <summary>The header of a whole CSV file of songs.</summary>
    private const string Header = "danceability,energy,key,loudness,mode,speechiness,acousticness,instrumentalness,liveness,valence,tempo,duration_ms," +
        "time_signature,chorus_hit,sections\n";

    /// <summary>Bad CSV files: the server's refusal is the CLI's, with "request body" where the CLI names the file.</summary>
    public static TheoryData<string, string> BadCsvs() => new()
    {
        { "not a number", Header + "0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10\n0.5,x,1,-5,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10\n" },
        { "a missing column", "danceability,energy\n0.5,0.5\n" },
        { "a short row", Header + "0.5,0.5,1\n" },
        { "no length", Header + "0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,120,-3,4,30,10\n" },
        { "header only", Header },
        { "infinity", Header + "0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,inf,200000,4,30,10\n" },
    };

    [Theory]
    [MemberData(nameof(BadCsvs))]
    public async Task A_bad_csv_is_400_in_the_words_of_the_cli(string what, string csv)
    {
        string path = File($"bad-{what.Replace(' ', '-')}.csv", csv);
        var cli = Run("predict", "--model", server.ModelPath, "--data", path);
        Assert.Equal(2, cli.Code);
        var (status, body, _) = await Post(Client, "/predict", csv, "text/csv");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        // The same line but for the option a hint names: a server built from ServeOptions says the library's
        // (CsvFormat.Delimiter), the CLI its flag (--delimiter); in the CLI's words the two are one.
        Assert.Equal(cli.Error.Trim().Replace("hitgpu: error: ", "").Replace(path, "request body"), HitGpu.Cli.HitGpuCli.InFlags(Error(body)));
    }

    /// <summary>Bad JSON records, and the words of each refusal: the CLI's for a value, with the line and column of the body.</summary>
    public static TheoryData<string, string, string> BadRecords()
    {
        const string song = "\"danceability\": 0.5, \"energy\": 0.5, \"key\": 1, \"loudness\": -5, \"mode\": 1, \"speechiness\": 0.05, " +
            "\"acousticness\": 0.1, \"instrumentalness\": 0, " +
            "\"liveness\": 0.1, \"valence\": 0.5, \"tempo\": 120, \"time_signature\": 4, \"chorus_hit\": 30, \"sections\": 10";
        return new()
        {
            { "malformed", "[{\"danceability\": }]", "request body:1:19: malformed JSON: '}' is an invalid start of a value." },
            { "not songs", "42", "request body:1:1: expected an array of songs" },
            { "empty", "[]", "request body: no songs (an empty array)" },
            { "not an object", "[[1, 2]]", "request body:1:2: song 1 is an array, not an object of features" },
            { "missing feature", $"[{{{song}}}]", "request body:1:2: song 1 has no 'duration_ms'; each song must name all 15 features: danceability,energy," },
            { "a string", $"[{{{song}, \"duration_ms\": \"long\"}}]", "request body:1:" },
            { "a string's words", $"[{{{song}, \"duration_ms\": \"long\"}}]", "duration_ms is not a number: '\"long\"'" },
            { "no length", $"[\n{{{song},\n \"duration_ms\": 0}}]", "request body:3:17: duration_ms must be positive, got 0" },
            { "beyond float32", $"[{{{song}, \"duration_ms\": 1e39}}]", "duration_ms is 1e39, beyond float32's range (±3.4e38)" },
            { "twice", $"[{{{song}, \"duration_ms\": 1, \"Tempo\": 3}}]", "song 1 names 'tempo' twice" },
            { "a track not a string", $"[{{{song}, \"duration_ms\": 1, \"track\": 5}}]", "song 1's track must be a string, got 5" },
            { "trailing", $"[{{{song}, \"duration_ms\": 1}}] x", "malformed JSON" },
        };
    }

    [Theory]
    [MemberData(nameof(BadRecords))]
    public async Task Bad_json_records_are_400_with_one_line_naming_the_problem(string what, string body, string expected)
    {
        var answer = await Post(Client, "/predict", body);
        Assert.True(answer.Status == HttpStatusCode.BadRequest, $"{what}: {answer.Status} {answer.Body}");
        Assert.Contains(expected, Error(answer.Body));
    }

    [Fact]
    public async Task A_body_that_cannot_hold_songs_is_415_and_a_bad_explain_flag_400()
    {
        var (status, body, _) = await Post(Client, "/predict", "<songs/>", "application/xml");
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, status);
        Assert.Equal("a body of type 'application/xml' cannot hold songs: send text/csv or application/json", Error(body));
        var flag = await Post(Client, "/predict?explain=maybe", Records(Features(0, 1)));
        Assert.Equal(HttpStatusCode.BadRequest, flag.Status);
        Assert.Equal("explain must be true or false, got 'maybe'", Error(flag.Body));
    }

    [Fact]
    public async Task The_page_and_its_model_description_are_served()
    {
        var page = await Get(Client, "/");
        Assert.Equal(HttpStatusCode.OK, page.Status);
        Assert.Equal("text/html", page.Type);
        Assert.Contains("page.js", page.Body);
        Assert.Equal("text/javascript", (await Get(Client, "/page.js")).Type);
        Assert.Equal("text/css", (await Get(Client, "/page.css")).Type);
        var model = JsonNode.Parse((await Get(Client, "/model")).Body)!;
        Assert.Equal("hits", model["name"]!.GetValue<string>());
        Assert.Equal("hits.hitgpu", model["file"]!.GetValue<string>());
        var statistics = server.Model.Preprocessing.Statistics!;
        var features = model["features"]!.AsArray();
        Assert.Equal(SongData.FeatureNames, features.Select(f => f!["name"]!.GetValue<string>()));
        Assert.Equal(statistics.Median, features.Select(f => f!["median"]!.GetValue<float>()));
        Assert.Equal(statistics.Min, features.Select(f => f!["min"]!.GetValue<float>()));
        Assert.Equal(statistics.Max, features.Select(f => f!["max"]!.GetValue<float>()));
        var training = model["training"]!;
        Assert.Equal(server.Model.Provenance!.Epochs, training["epochs"]!.GetValue<int>());
        Assert.Equal(SongData.EmbeddedName, training["data"]![0]!["source"]!.GetValue<string>());
        Assert.Equal(5000, model["limits"]!["max_rows"]!.GetValue<int>());
    }
}

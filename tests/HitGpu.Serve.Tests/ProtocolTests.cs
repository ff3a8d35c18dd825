// The Open Inference Protocol's endpoints as its REST specification gives them (health, server and model
// metadata, model readiness, inference), their error shapes, and the answers held to the library's scoring.
using System.Net;
using System.Text.Json.Nodes;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class ProtocolTests(ServerFixture server)
{
    private HttpClient Client => server.Client;

    [Fact]
    public async Task Health_live_and_ready_answer_200()
    {
        var live = await Get(Client, "/v2/health/live");
        Assert.Equal(HttpStatusCode.OK, live.Status);
        Assert.True(JsonNode.Parse(live.Body)!["live"]!.GetValue<bool>());
        var ready = await Get(Client, "/v2/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.Status);
        Assert.True(JsonNode.Parse(ready.Body)!["ready"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Server_metadata_names_the_server_and_its_extensions()
    {
        var (status, body, type) = await Get(Client, "/v2");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("application/json", type);
        var node = JsonNode.Parse(body)!;
        Assert.Equal("hitgpu", node["name"]!.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(node["version"]!.GetValue<string>()));
        Assert.NotNull(node["extensions"]!.AsArray());
    }

    [Fact]
    public async Task Model_metadata_gives_the_features_tensor_in_the_model_order_and_the_probability()
    {
        var (status, body, _) = await Get(Client, "/v2/models/hits");
        Assert.Equal(HttpStatusCode.OK, status);
        var node = JsonNode.Parse(body)!;
        Assert.Equal("hits", node["name"]!.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(node["platform"]!.GetValue<string>()));
        var input = Assert.Single(node["inputs"]!.AsArray())!;
        Assert.Equal("features", input["name"]!.GetValue<string>());
        Assert.Equal("FP32", input["datatype"]!.GetValue<string>());
        Assert.Equal([-1, SongData.FeatureCount], input["shape"]!.AsArray().Select(d => d!.GetValue<int>()));
        Assert.Equal(SongData.FeatureNames, input["parameters"]!["features"]!.GetValue<string>().Split(','));
        var output = Assert.Single(node["outputs"]!.AsArray())!;
        Assert.Equal("probability", output["name"]!.GetValue<string>());
        Assert.Equal("FP32", output["datatype"]!.GetValue<string>());
        Assert.Equal([-1, 1], output["shape"]!.AsArray().Select(d => d!.GetValue<int>()));
    }

    [Fact]
    public async Task Model_ready_names_the_model()
    {
        var (status, body, _) = await Get(Client, "/v2/models/hits/ready");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("hits", JsonNode.Parse(body)!["name"]!.GetValue<string>());
        Assert.True(JsonNode.Parse(body)!["ready"]!.GetValue<bool>());
    }

    [Theory]
    [InlineData("GET", "/v2/models/other")]
    [InlineData("GET", "/v2/models/other/ready")]
    [InlineData("POST", "/v2/models/other/infer")]
    public async Task An_unknown_model_is_404_with_an_error_object(string method, string path)
    {
        var (status, body, type) = await Send(Client, new HttpMethod(method), path, method == "POST" ? Infer(Features(0, 1)) : null);
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("application/json", type);
        Assert.Equal("unknown model 'other': this server serves 'hits'", Error(body));
    }

    [Fact]
    public async Task The_model_has_one_version_which_its_versioned_paths_answer_as_the_plain_ones()
    {
        var metadata = await Get(Client, "/v2/models/hits");
        string version = Assert.Single(JsonNode.Parse(metadata.Body)!["versions"]!.AsArray())!.GetValue<string>();
        var versioned = await Get(Client, $"/v2/models/hits/versions/{version}");
        Assert.Equal(HttpStatusCode.OK, versioned.Status);
        Assert.Equal(metadata.Body, versioned.Body);
        var ready = await Get(Client, $"/v2/models/hits/versions/{version}/ready");
        Assert.Equal(HttpStatusCode.OK, ready.Status);
        Assert.True(JsonNode.Parse(ready.Body)!["ready"]!.GetValue<bool>());
        var features = Features(610, 5);
        var (status, body, _) = await Post(Client, $"/v2/models/hits/versions/{version}/infer", Infer(features));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(version, JsonNode.Parse(body)!["model_version"]!.GetValue<string>());
        Assert.Equal(server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features }), Probabilities(body));
        Assert.Equal(version, JsonNode.Parse((await Post(Client, "/v2/models/hits/infer", Infer(features))).Body)!["model_version"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("GET", "/v2/models/hits/versions/2")]
    [InlineData("GET", "/v2/models/hits/versions/2/ready")]
    [InlineData("POST", "/v2/models/hits/versions/2/infer")]
    [InlineData("GET", "/v2/models/hits/versions/latest")]
    public async Task Another_version_is_404_naming_it_and_the_one_there_is(string method, string path)
    {
        var (status, body, type) = await Send(Client, new HttpMethod(method), path, method == "POST" ? Infer(Features(0, 1)) : null);
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("application/json", type);
        Assert.Equal($"model 'hits' has no version '{path.Split('/')[5]}': its one version is '1'", Error(body));
    }

    [Fact]
    public async Task An_unknown_path_is_404_with_an_error_object()
    {
        var (status, body, _) = await Get(Client, "/v2/nothing/here");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("/v2/nothing/here", Error(body));
    }

    [Fact]
    public async Task Inference_gives_each_song_the_probability_the_library_gives_it_bit_for_bit()
    {
        var features = Features(17, 301);
        var (status, body, type) = await Post(Client, "/v2/models/hits/infer", Infer(features, id: "request-7"));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("application/json", type);
        var node = JsonNode.Parse(body)!;
        Assert.Equal("hits", node["model_name"]!.GetValue<string>());
        Assert.Equal("request-7", node["id"]!.GetValue<string>());
        var output = Assert.Single(node["outputs"]!.AsArray())!;
        Assert.Equal("probability", output["name"]!.GetValue<string>());
        Assert.Equal("FP32", output["datatype"]!.GetValue<string>());
        Assert.Equal([301, 1], output["shape"]!.AsArray().Select(d => d!.GetValue<int>()));
        var expected = server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features });
        Assert.Equal(expected, Probabilities(body));
    }

    [Fact]
    public async Task Inference_takes_nested_data_and_a_request_for_its_output_and_leaves_out_an_id_not_sent()
    {
        var features = Features(40, 3);
        var nested = new JsonObject
        {
            ["inputs"] = new JsonArray(new JsonObject
            {
                ["name"] = "features",
                ["shape"] = new JsonArray(3, 15),
                ["datatype"] = "FP32",
                ["data"] = new JsonArray([.. features.Chunk(15).Select(row => (JsonNode)new JsonArray([.. row.Select(v => JsonValue.Create(v))]))]),
            }),
            ["outputs"] = new JsonArray(new JsonObject { ["name"] = "probability" }),
            ["parameters"] = new JsonObject { ["note"] = "ignored" },
        }.ToJsonString();
        var (status, body, _) = await Post(Client, "/v2/models/hits/infer", nested);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Null(JsonNode.Parse(body)!["id"]);
        var flat = await Post(Client, "/v2/models/hits/infer", Infer(features));
        Assert.Equal(Probabilities(flat.Body), Probabilities(body));
    }

    /// <summary>Requests the protocol's server must refuse, and the words of each refusal (the CLI's, where the CLI has them).</summary>
    public static TheoryData<string, string, string> BadInferences()
    {
        string Tensor(string name = "\"features\"", string shape = "[1, 15]", string datatype = "\"FP32\"",
            string data = "[0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10]") =>
            $"{{\"inputs\": [{{\"name\": {name}, \"shape\": {shape}, \"datatype\": {datatype}, \"data\": {data}}}]}}";
        return new()
        {
            { "malformed JSON", "{\"inputs\": [", "request body:1:13: malformed JSON" },
            { "not an object", "[1, 2]", "request body: expected an inference request object" },
            { "no inputs", "{}", "request body: the request needs \"inputs\"" },
            { "two inputs", "{\"inputs\": [{}, {}]}", "request body: the model takes one input, 'features'; the request has 2" },
            { "unknown input", Tensor(name: "\"x\""), "request body: unknown input 'x': the model takes one input, 'features' (FP32, [-1, 15])" },
            { "wrong datatype", Tensor(datatype: "\"INT64\""), "request body: input 'features': datatype must be FP32, got 'INT64'" },
            { "wrong shape", Tensor(shape: "[15]"), "request body: input 'features': shape must be [N, 15] (N songs), got [15]" },
            { "wrong width", Tensor(shape: "[1, 14]"), "request body: input 'features': shape must be [N, 15] (N songs), got [1, 14]" },
            { "a shape of words", Tensor(shape: "[\"one\", 15]"), "request body: input 'features': shape must be [N, 15] (N songs), got [\"one\", 15]" },
            { "an object value", Tensor(data: "[{\"v\": 0.5},0.5,1,-5,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10]"),
                "request body: input 'features': song 1: danceability is not a number: '{\"v\": 0.5}'" },
            // One value however deep it holds arrays and objects: the count (made in the pass that checks the keys) is 15.
            { "an object value holding arrays", Tensor(data: "[[{\"v\": [0.5, [1, {\"w\": []}]]},0.5,1,-5,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10]]"),
                "request body: input 'features': song 1: danceability is not a number: '{\"v\": [0.5, [1, {\"w\": []}]]}'" },
            { "an input not an object", "{\"inputs\": [7]}", "request body: inputs[0] must be a tensor object, got a number" },
            { "no songs", Tensor(shape: "[0, 15]", data: "[]"), "request body: input 'features': no songs (shape [0, 15])" },
            { "too few values", Tensor(shape: "[2, 15]"), "request body: input 'features': data has 15 values, the shape [2, 15] needs 30" },
            { "a string value", Tensor(data: "[0.5,\"loud\",1,-5,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10]"),
                "request body: input 'features': song 1: energy is not a number: '\"loud\"'" },
            { "a null value", Tensor(data: "[0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,null,200000,4,30,10]"),
                "request body: input 'features': song 1: tempo is not a number: 'null'" },
            { "beyond float32", Tensor(data: "[0.5,0.5,1,-5e39,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10]"),
                "request body: input 'features': song 1: loudness is -5e39, beyond float32's range (±3.4e38)" },
            { "not finite", Tensor(data: "[0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,1e400,200000,4,30,10]"),
                "request body: input 'features': song 1: tempo must be finite, got '1e400'" },
            { "a song of no length", Tensor(data: "[0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,120,0,4,30,10]"),
                "request body: input 'features': song 1: duration_ms must be positive, got 0" },
            { "unknown output", "{\"inputs\": [], \"outputs\": [{\"name\": \"logit\"}]}",
                "request body: unknown output 'logit': the model gives one output, 'probability'" },
            { "binary data without its header",
                "{\"inputs\": [{\"name\": \"features\", \"datatype\": \"FP32\", \"shape\": [1, 15], \"parameters\": {\"binary_data_size\": 60}}]}",
                "request body: input 'features' has binary_data_size, but the request has no Inference-Header-Content-Length header" },
            { "id not a string", "{\"id\": 7, \"inputs\": []}", "request body: id must be a string, got a number" },
            // A key twice: JSON parsers differ on which one wins (RFC 8259, 4), so a proxy or a log could read another request than the server.
            { "inputs twice", "{\"inputs\": [], " + Tensor()[1..],
                "request body:1:16: 'inputs' given twice in one object (JSON readers differ on which one counts)" },
            { "a shape twice", Tensor(shape: "[1, 15], \"shape\": [2, 15]"), "request body:1:52: 'shape' given twice" },
            { "data twice", Tensor(data: "[], \"data\": [0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10]"), "request body:1:" },
            { "data twice's words", Tensor(data: "[], \"data\": [0.5,0.5,1,-5,1,0.05,0.1,0,0.1,0.5,120,200000,4,30,10]"),
                "request body:1:84: 'data' given twice" },
            { "an id twice", "{\"id\": \"a\", \"id\": \"b\", " + Tensor()[1..], "request body:1:13: 'id' given twice" },
            { "a parameter twice", "{\"parameters\": {\"p\": 1, \"p\": 2}, " + Tensor()[1..], "request body:1:25: 'p' given twice" },
        };
    }

    [Theory]
    [MemberData(nameof(BadInferences))]
    public async Task A_bad_inference_request_is_400_with_one_line_naming_the_problem(string what, string request, string expected)
    {
        var (status, body, type) = await Post(Client, "/v2/models/hits/infer", request);
        Assert.True(status == HttpStatusCode.BadRequest, $"{what}: {status} {body}");
        Assert.Equal("application/json", type);
        Assert.StartsWith(expected, Error(body));
    }

    [Fact]
    public async Task More_songs_than_a_request_may_send_are_413()
    {
        var (status, body, _) = await Post(Client, "/v2/models/hits/infer",
            $"{{\"inputs\": [{{\"name\": \"features\", \"shape\": [5001, 15], \"datatype\": \"FP32\", \"data\": []}}]}}");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("request body: 5001 songs, more than the 5000 a request may send (ServeOptions.MaxRows)", Error(body));
    }

    [Fact]
    public async Task A_body_over_the_size_limit_is_413_whether_or_not_its_length_is_announced()
    {
        // A client of its own: the server closes these connections after the refusal, and a test after this one
        // must not be sent on one of them from the shared client's pool (it then read "response ended prematurely").
        using var client = new HttpClient { BaseAddress = Client.BaseAddress };
        string big = new(' ', (4 << 20) + 1);
        var (status, body, _) = await Post(client, "/v2/models/hits/infer", big);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Contains("over the 4194304 a request may send (ServeOptions.MaxBodyBytes)", Error(body));

        using var chunked = new HttpRequestMessage(HttpMethod.Post, "/predict") { Content = new StreamContent(new MemoryStream(new byte[(4 << 20) + 10])) };
        chunked.Headers.TransferEncodingChunked = true;
        using var response = await client.SendAsync(chunked);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("a request may send (ServeOptions.MaxBodyBytes)", Error(await response.Content.ReadAsStringAsync()));
    }
}

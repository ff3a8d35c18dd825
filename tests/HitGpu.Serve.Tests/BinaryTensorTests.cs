// The protocol's binary tensor data extension (Triton's, KServe's): a request whose JSON header is followed
// by the tensor's raw values (FP32, little-endian, row-major), its length in Inference-Header-Content-Length;
// outputs asked as binary answered the same way. Held to the library's probabilities, as the JSON tensors are.
using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class BinaryTensorTests(ServerFixture server)
{
    private const string HeaderLength = "Inference-Header-Content-Length";

    private static byte[] Raw(float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    /// <summary>A JSON header for <paramref name="rows"/> songs sent in binary, with what else is given.</summary>
    private static string Header(int rows, long? size = null, string outputs = "", string parameters = "") =>
        $"{{\"id\": \"b\", {parameters}\"inputs\": [{{\"name\": \"features\", \"shape\": [{rows}, 15], \"datatype\": \"FP32\", " +
        $"\"parameters\": {{\"binary_data_size\": {size ?? rows * 60L}}}}}]{outputs}}}";

    private async Task<(HttpResponseMessage Response, byte[] Body)> PostBinary(string header, byte[] values, string? length = null)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v2/models/hits/infer") { Content = new ByteArrayContent([.. json, .. values]) };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/octet-stream");
        request.Headers.TryAddWithoutValidation(HeaderLength, length ?? json.Length.ToString(CultureInfo.InvariantCulture));
        var response = await server.Client.SendAsync(request);
        return (response, await response.Content.ReadAsByteArrayAsync());
    }

    private float[] Expected(float[] features) => server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features });

    [Fact]
    public async Task The_server_lists_the_extension()
    {
        var extensions = JsonNode.Parse((await Get(server.Client, "/v2")).Body)!["extensions"]!.AsArray().Select(e => e!.GetValue<string>());
        Assert.Contains("binary_tensor_data", extensions);
    }

    [Fact]
    public async Task Songs_in_binary_after_the_json_header_are_scored_as_the_same_songs_in_json()
    {
        var features = Features(1200, 37);
        var (response, body) = await PostBinary(Header(37), Raw(features));
        Assert.True(response.StatusCode == HttpStatusCode.OK, Encoding.UTF8.GetString(body));
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.False(response.Headers.Contains(HeaderLength));
        Assert.Equal(Expected(features), Probabilities(Encoding.UTF8.GetString(body)));
    }

    /// <summary>An answer's JSON header and its binary output (the probabilities), read as a client reads them.</summary>
    private static (JsonNode Head, float[] Probabilities) ReadBinaryAnswer(HttpResponseMessage response, byte[] body)
    {
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/octet-stream", response.Content.Headers.ContentType?.MediaType);
        int length = int.Parse(response.Headers.GetValues(HeaderLength).Single(), CultureInfo.InvariantCulture);
        var head = JsonNode.Parse(body.AsSpan(0, length).ToArray())!;
        var output = head["outputs"]![0]!;
        Assert.Null(output["data"]);
        int size = output["parameters"]!["binary_data_size"]!.GetValue<int>();
        Assert.Equal(body.Length - length, size);
        var probabilities = new float[size / 4];
        for (int i = 0; i < probabilities.Length; i++)
            probabilities[i] = BinaryPrimitives.ReadSingleLittleEndian(body.AsSpan(length + i * 4));
        return (head, probabilities);
    }

    [Fact]
    public async Task An_output_asked_in_binary_comes_after_the_json_header_whose_length_the_answer_gives()
    {
        var features = Features(2000, 9);
        var (response, body) = await PostBinary(Header(9,
            outputs: ", \"outputs\": [{\"name\": \"probability\", \"parameters\": {\"binary_data\": true}}]"), Raw(features));
        var (head, probabilities) = ReadBinaryAnswer(response, body);
        Assert.Equal("b", head["id"]!.GetValue<string>());
        Assert.Equal([9, 1], head["outputs"]![0]!["shape"]!.AsArray().Select(d => d!.GetValue<int>()));
        Assert.Equal(Expected(features), probabilities);
        Assert.Equal(body.Length, response.Content.Headers.ContentLength);
    }

    [Fact]
    public async Task All_outputs_in_binary_on_the_request_parameter_with_songs_in_json_and_an_output_may_say_no()
    {
        var features = Features(3000, 4);
        var request = JsonNode.Parse(Infer(features))!;
        request["parameters"] = new JsonObject { ["binary_data_output"] = true };
        using var content = new StringContent(request.ToJsonString(), Encoding.UTF8, "application/json");
        using var response = await server.Client.PostAsync("/v2/models/hits/infer", content);
        Assert.Equal(Expected(features), ReadBinaryAnswer(response, await response.Content.ReadAsByteArrayAsync()).Probabilities);

        request["outputs"] = new JsonArray(new JsonObject { ["name"] = "probability", ["parameters"] = new JsonObject { ["binary_data"] = false } });
        var (status, body, type) = await Post(server.Client, "/v2/models/hits/infer", request.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("application/json", type);
        Assert.Equal(Expected(features), Probabilities(body));
    }

    public static TheoryData<string, string, int, string?, string> BadBinaries() => new()
    {
        { "header longer than the body", Header(1), 60, "100000", "request body: Inference-Header-Content-Length is 100000, but the body has" },
        { "header not a number", Header(1), 60, "many", "Inference-Header-Content-Length must be the JSON header's length in bytes, got 'many'" },
        { "size not the shape's", Header(2, size: 60), 60, null,
            "request body: input 'features': binary_data_size is 60, the shape [2, 15] of FP32 needs 120" },
        { "bytes not the size", Header(2), 100, null, "request body: input 'features': 100 bytes follow the JSON header, binary_data_size says 120" },
        { "data and binary", Header(1).Replace("\"datatype\"", "\"data\": [1], \"datatype\""), 60, null,
            "request body: input 'features': both \"data\" and binary_data_size: send the values one way" },
        { "a size not a count", Header(1).Replace("\"binary_data_size\": 60", "\"binary_data_size\": \"60\""), 60, null,
            "request body: input 'features': binary_data_size must be a count of bytes, got \"60\"" },
        { "bytes but no binary input", Infer(Features(0, 1)), 8, null, "request body: 8 bytes follow the JSON header, but no input has binary_data_size" },
    };

    [Theory]
    [MemberData(nameof(BadBinaries))]
    public async Task A_bad_binary_request_is_400_with_one_line_naming_the_problem(string what, string header, int bytes, string? length, string expected)
    {
        var (response, body) = await PostBinary(header, Raw(Features(0, bytes / 60 + 1))[..bytes], length);
        string text = Encoding.UTF8.GetString(body);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{what}: {response.StatusCode} {text}");
        Assert.StartsWith(expected, Error(text));
    }

    [Fact]
    public async Task A_binary_value_is_checked_as_a_json_one()
    {
        var features = Features(10, 2);
        features[15 + 10] = float.NaN; // song 2's tempo
        var (response, body) = await PostBinary(Header(2), Raw(features));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("request body: input 'features': song 2: tempo must be finite, got 'NaN'", Error(Encoding.UTF8.GetString(body)));
        features[15 + 10] = 120;
        features[11] = -1; // song 1's duration_ms
        (response, body) = await PostBinary(Header(2), Raw(features));
        Assert.Equal("request body: input 'features': song 1: duration_ms must be positive, got -1", Error(Encoding.UTF8.GetString(body)));
    }

    [Fact]
    public async Task Binary_data_size_without_the_header_says_what_is_missing()
    {
        var (status, body, _) = await Post(server.Client, "/v2/models/hits/infer", Header(1));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal($"request body: input 'features' has binary_data_size, but the request has no {HeaderLength} header to say where its bytes " +
            $"begin", Error(body));
    }
}

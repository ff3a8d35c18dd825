// Property-based tests (CsCheck) of what clients send, in the style of the CLI's fuzzing: valid bodies of
// every form (JSON records, the protocol's tensor in JSON and in binary, CSV) built from real songs, then
// damaged byte by byte (cut, bytes and JSON/CSV tokens inserted, removed or repeated), sent to every endpoint
// that takes songs, in parallel, under random content types. Each answer is a success or one refusal line with a 4xx status;
// never a 500, a dropped connection, or a changed answer for anyone else. Bounded and seeded as the CLI's
// (FUZZ_ITERATIONS, FUZZ_SEED).
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using HitGpu.Nn.Tests;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class FuzzTests(ServerFixture server)
{
    public sealed record Damage(int Kind, int At, int Length, int Token)
    {
        private static readonly string[] Tokens = ["\"", "{", "}", "[", "]", ",", ":", "null", "true", "1e999", "-", "NaN", "\"x\"", "\n", ";", "\t",
            "\u00e9", "\0", "1e39", "0", "-0", "\"features\"", "[1, 15]", "\"FP64\""];

        public byte[] Apply(byte[] body)
        {
            int at = body.Length == 0 ? 0 : At % (body.Length + 1), length = Math.Min(Length, body.Length - at);
            byte[] token = Encoding.UTF8.GetBytes(Tokens[Token % Tokens.Length]);
            return Kind switch
            {
                0 => body[..at],                                                           // cut short
                1 => [.. body[..at], .. token, .. body[at..]],                             // a token inserted
                2 => [.. body[..at], .. body[(at + length)..]],                             // a range removed
                3 => [.. body[..at], .. body[at..(at + length)], .. body[at..]],            // a range repeated
                4 when at < body.Length => [.. body[..at], (byte)(Token * 37), .. body[(at + 1)..]], // a byte replaced
                _ => [.. body[..at], .. token, .. body[(at + length)..]],                  // a range replaced by a token
            };
        }
    }

    public sealed record Case(int Form, int First, int Rows, string? Type, bool Explain, Damage[] Damages)
    {
        public override string ToString()
            => $"form {Form}, songs {First}+{Rows}, type {Type ?? "none"}, explain {Explain}, damages [{string.Join(", ", Damages.Select(d => d.ToString()))}]";

        public bool Inference => Form is 1 or 3;

        public string Path => Inference ? "/v2/models/hits/infer" : Explain ? "/predict?explain=true" : "/predict";

        /// <summary>Form 3, the binary tensor extension's: the JSON header's length as sent (the damage may move the bytes after it).</summary>
        public string? HeaderLength => Form == 3
            ? Encoding.UTF8.GetByteCount(BinaryHeader(Rows)).ToString(System.Globalization.CultureInfo.InvariantCulture) : null;

        private static string BinaryHeader(int rows) =>
            $"{{\"inputs\": [{{\"name\": \"features\", \"shape\": [{rows}, 15], \"datatype\": \"FP32\", " +
            $"\"parameters\": {{\"binary_data_size\": {rows * 60}}}}}]}}";

        public byte[] Body()
        {
            var features = Features(First, Rows);
            byte[] body = Form switch
            {
                0 => Encoding.UTF8.GetBytes(Records(features)),
                1 => Encoding.UTF8.GetBytes(Infer(features, id: "fuzz")),
                3 => [.. Encoding.UTF8.GetBytes(BinaryHeader(Rows)), .. features.SelectMany(BitConverter.GetBytes)],
                _ => Encoding.UTF8.GetBytes(Csv(features)),
            };
            return Damages.Aggregate(body, (bytes, damage) => damage.Apply(bytes));
        }
    }

    private static readonly string?[] Types = [null, "application/json", "text/csv", "text/plain", "application/x-www-form-urlencoded",
        "application/octet-stream", "image/png"];

    private static readonly Gen<Case> Cases =
        Gen.Select(Gen.Int[0, 3], Gen.Int[0, 5000], Gen.Int[1, 6], Gen.Int[0, Types.Length - 1], Gen.Bool,
            Gen.Select(Gen.Int[0, 5], Gen.Int[0, 100_000], Gen.Int[0, 40], Gen.Int[0, 1000], (k, a, l, t) => new Damage(k, a, l, t)).Array[0, 4],
            (form, first, rows, type, explain, damages) => new Case(form, first, rows, Types[type], explain && rows < 3, damages));

    [Fact]
    public async Task No_request_takes_the_server_down_or_changes_its_answers_to_others()
    {
        var probe = Infer(Features(77, 4));
        var before = await Post(server.Client, "/v2/models/hits/infer", probe);
        var statuses = new System.Collections.Concurrent.ConcurrentDictionary<HttpStatusCode, int>();
        Cases.Sample(c =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, c.Path) { Content = new ByteArrayContent(c.Body()) };
            if (c.Type is not null)
                request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(c.Type);
            if (c.HeaderLength is { } length)
                request.Headers.Add(SongRequests.HeaderLengthName, length);
            using var response = server.Client.Send(request);
            string body = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            statuses.AddOrUpdate(response.StatusCode, 1, (_, n) => n + 1);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                if (c.Inference)
                    Assert.All(Probabilities(body), p => Assert.InRange(p, 0f, 1f));
                else if (response.Content.Headers.ContentType?.MediaType == "application/json")
                    Assert.NotNull(JsonNode.Parse(body));
                else
                    Assert.StartsWith("track,artist,probability,prediction", body.Replace("row,probability", "track,artist,probability"));
                return;
            }
            Assert.True(response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.UnsupportedMediaType or HttpStatusCode.RequestEntityTooLarge,
                $"{(int)response.StatusCode}: {body}");
            string message = Error(body);
            Assert.True(message.StartsWith(SongRequests.Source, StringComparison.Ordinal)
                || message.StartsWith("a body of type", StringComparison.Ordinal), message);
        }, seed: Invariant.Seed, iter: Invariant.Iterations(400), threads: 4);
        TestContext.Current.TestOutputHelper?.WriteLine(string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{(int)s.Key}: {s.Value}")));
        var after = await Post(server.Client, "/v2/models/hits/infer", probe);
        Assert.Equal(before.Body, after.Body);
        Assert.True(statuses.ContainsKey(HttpStatusCode.OK) && statuses.ContainsKey(HttpStatusCode.BadRequest), "the cases should reach both answers");
    }

    // ---- cases the fuzzing found, pinned ----

    [Fact]
    public async Task A_key_that_is_not_utf8_is_refused_where_it_is()
    {
        byte[] body = [.. "[{\"dance"u8, 0xC3, 0x28, .. "\": 1}]"u8];
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var response = await server.Client.PostAsync("/predict", content);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("request body:1:9: not UTF-8 text (JSON must be UTF-8)", Error(await response.Content.ReadAsStringAsync()));
    }

    [Fact]
    public async Task A_tensor_with_two_values_too_many_is_counted_not_overrun()
    {
        var features = Features(3, 1);
        var node = JsonNode.Parse(Infer(features))!;
        node["inputs"]![0]!["data"]!.AsArray().Add(0.5f);
        node["inputs"]![0]!["data"]!.AsArray().Add(0.25f);
        var (status, body, _) = await Post(server.Client, "/v2/models/hits/infer", node.ToJsonString());
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("request body: input 'features': data has 17 values, the shape [1, 15] needs 15", Error(body));
    }
}

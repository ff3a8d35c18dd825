// The memory a JSON body costs while it is parsed: read from its bytes into the float tensor, no document tree
// and no string per key, so that the body and everything parsing allocates stay within 3 times the body (the
// bound docs/SERVING.md gives). Allocated bytes are counted on the parsing thread: deterministic, unlike time.
using System.Globalization;
using System.Text;

namespace HitGpu.Serve.Tests;

public sealed class MemoryTests(ITestOutputHelper output)
{
    private const int BodyBytes = 15 << 20;

    /// <summary>The embedded songs, repeated until the body is about 15 MB: as an inference tensor, or as records.</summary>
    private static (byte[] Body, float[] Features) Body(bool records)
    {
        var text = new StringBuilder(BodyBytes + 4096);
        var features = new List<float>();
        text.Append(records ? "[" : """{"id": "big", "inputs": [{"name": "features", "datatype": "FP32", "data": [""");
        int rows = 0;
        for (; text.Length < BodyBytes - 1024; rows++)
        {
            var song = ServerFixture.Songs.Features.AsSpan(rows % ServerFixture.Songs.Count * SongData.FeatureCount, SongData.FeatureCount);
            text.Append(rows > 0 ? "," : "").Append(records ? "{" : "");
            for (int f = 0; f < SongData.FeatureCount; f++)
            {
                string value = song[f].ToString("R", CultureInfo.InvariantCulture);
                text.Append(f > 0 ? "," : "").Append(records ? $"\"{SongData.FeatureNames[f]}\": {value}" : value);
                features.Add(song[f]);
            }
            text.Append(records ? "}" : "");
        }
        text.Append(records ? "]" : $$"""], "shape": [{{rows}}, 15]}]}""");
        return (Encoding.UTF8.GetBytes(text.ToString()), [.. features]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Parsing_a_15_MB_json_body_takes_at_most_twice_the_body_more(bool records)
    {
        var (body, expected) = Body(records);
        float[] Parse(byte[] json) => records ? SongRequests.ReadRecords(json, int.MaxValue).Features : SongRequests.ReadInfer(json, int.MaxValue).Features;
        // Compiled, and static tables made, on a small body: a large one first would fill pools the count then misses.
        Parse(Encoding.UTF8.GetBytes(records ? Http.Records(Http.Features(0, 2)) : Http.Infer(Http.Features(0, 2))));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var features = Parse(body);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(expected, features);
        double times = allocated / (double)body.Length;
        output.WriteLine($"{(records ? "records" : "tensor")}: body {body.Length} bytes, parsing allocated {allocated} ({times:F2} x the body)");
        Assert.True(body.Length + allocated <= 3L * body.Length,
            $"parsing a {body.Length}-byte body allocated {allocated} bytes: body and parse {1 + times:F2} x the body, over 3");
    }
}

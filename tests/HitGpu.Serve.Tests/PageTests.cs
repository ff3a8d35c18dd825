// The page for people, driven in a real browser (Debian's headless Chromium through PuppeteerSharp) against
// the real server: the model's name and training shown, the form at the training medians, a prediction and
// its contributions as the values move (held to the library's), a CSV dropped and scored as a sortable table,
// a bad file's refusal shown. HITGPU_PAGE_SCREENSHOT=FILE.png also writes the README's screenshot.
// Without Chromium the test says it is skipped, unless HITGPU_REQUIRE_BROWSER=1 (CI) makes that a failure.
using System.Globalization;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class PageTests(ServerFixture server)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static void RequireChromium()
    {
        if (Browser.ChromiumPath is null && Environment.GetEnvironmentVariable("HITGPU_REQUIRE_BROWSER") == "1")
            Assert.Fail("HITGPU_REQUIRE_BROWSER=1 but no Chromium is installed (apt-get install chromium)");
        Assert.SkipWhen(Browser.ChromiumPath is null, "no Chromium installed (apt-get install chromium): the page's browser test cannot run");
    }

    /// <summary>The song the form holds now, as the page will send it.</summary>
    private static async Task<float[]> FormSong(Browser browser) =>
        [.. (await browser.EvaluateAsync<double[]>(
            $"[{string.Join(",", SongData.FeatureNames.Select(n => $"Number(document.getElementById('feature-{n}').value)"))}]")).Select(v => (float)v)];

    private async Task HoldsTheLibraryAnswer(Browser browser)
    {
        var song = await FormSong(browser);
        var expected = Explain.IntegratedGradients(server.Device, server.Model, new SongTable { Source = "form", Features = song });
        float shown = float.Parse(await browser.EvaluateAsync<string>("document.getElementById('probability').dataset.value"), CultureInfo.InvariantCulture);
        Assert.Equal(expected.Probabilities[0], shown);
        Assert.EndsWith("%", await browser.EvaluateAsync<string>("document.getElementById('probability').textContent"));
        Assert.Equal(expected.Probabilities[0] > 0.5f ? "Hit" : "Not a Hit",
            await browser.EvaluateAsync<string>("document.getElementById('verdict').textContent.trim()"));
        var bars = await
            browser.EvaluateAsync<string[][]>("[...document.querySelectorAll('#contributions .bar')].map(b => [b.dataset.feature, b.dataset.value])");
        Assert.Equal(SongData.FeatureCount, bars.Length);
        foreach (var bar in bars)
            Assert.Equal(expected.Of(0)[Array.IndexOf(SongData.FeatureNames, bar[0])], float.Parse(bar[1], CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task A_person_moves_the_sliders_and_drops_a_csv_and_sees_what_the_library_computes()
    {
        RequireChromium();
        await using var browser = await Browser.LaunchAsync();
        await browser.NavigateAsync(server.Server.Addresses[0] + "/");
        await browser.WaitForAsync("document.body.dataset.prediction === 'ready'", Patience);

        Assert.Equal("hits", await browser.EvaluateAsync<string>("document.getElementById('model-name').textContent.trim()"));
        string training = await browser.EvaluateAsync<string>("document.getElementById('training').textContent");
        Assert.Contains(SongData.EmbeddedName, training);
        var medians = server.Model.Preprocessing.Statistics!.Median;
        var song = await FormSong(browser);
        for (int f = 0; f < SongData.FeatureCount; f++)
            Assert.True(Math.Abs(song[f] - medians[f]) <= 1e-6 * Math.Max(1, Math.Abs(medians[f])),
                $"{SongData.FeatureNames[f]} starts at {song[f]}, the median is {medians[f]}");
        await HoldsTheLibraryAnswer(browser);

        // A slider moved to its far end: a new prediction, again the library's.
        string before = await browser.EvaluateAsync<string>("document.getElementById('probability').dataset.value");
        await browser.EvaluateAsync("""
            (() => { const r = document.getElementById('feature-danceability-range'); r.value = r.max;
                r.dispatchEvent(new Event('input', { bubbles: true })); })()
            """);
        await browser.WaitForAsync("document.body.dataset.prediction === 'ready'", Patience);
        await HoldsTheLibraryAnswer(browser);
        Assert.NotEqual(before, await browser.EvaluateAsync<string>("document.getElementById('probability').dataset.value"));

        // A typed value.
        await browser.EvaluateAsync("""
            (() => { const n = document.getElementById('feature-duration_ms'); n.value = '95000'; n.dispatchEvent(new Event('input', { bubbles: true })); })()
            """);
        await browser.WaitForAsync("document.body.dataset.prediction === 'ready'", Patience);
        Assert.Equal(95000f, (await FormSong(browser))[SongData.DurationFeature]);
        await HoldsTheLibraryAnswer(browser);

        if (Environment.GetEnvironmentVariable("HITGPU_PAGE_SCREENSHOT") is { Length: > 0 } screenshot)
            await browser.ScreenshotAsync(screenshot, 1280, 900);

        // A CSV dropped on the page: a table of the songs with the probabilities hitgpu predict gives them.
        var lines = System.Text.Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n');
        string csv = string.Join("\n", lines.Take(21)) + "\n";
        var table = SongData.Parse(System.Text.Encoding.UTF8.GetBytes(csv), "dropped.csv", requireTarget: false);
        var expected = server.Model.PredictProbabilities(server.Device, table);
        await browser.DropFileAsync("#drop", "songs.csv", csv);
        await browser.WaitForAsync("document.body.dataset.csv === 'scored'", Patience);
        string[] header = await browser.EvaluateAsync<string[]>("[...document.querySelectorAll('#results th')].map(th => th.textContent.trim())");
        int probability = Array.FindIndex(header, h => h.StartsWith("probability", StringComparison.Ordinal)),
            track = Array.FindIndex(header, h => h.StartsWith("track", StringComparison.Ordinal));
        Assert.True(probability >= 0 && track >= 0, $"columns: {string.Join(", ", header)}");
        string[][] rows = await
            browser.EvaluateAsync<string[][]>("[...document.querySelectorAll('#results tbody tr')].map(tr => [...tr.cells].map(td => td.textContent.trim()))");
        Assert.Equal(20, rows.Length);
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.Equal(table.Tracks![i], rows[i][track]);
            Assert.Equal(expected[i].ToString("F6", CultureInfo.InvariantCulture), rows[i][probability]);
        }
        Assert.Equal("20", await browser.EvaluateAsync<string>("document.getElementById('row-count').dataset.rows"));
        Assert.False(await browser.EvaluateAsync<bool>("document.getElementById('download').disabled"));

        // Sorted by probability on a click of its header.
        await browser.EvaluateAsync($"document.querySelectorAll('#results th')[{probability}].click()");
        var sorted = (await browser.EvaluateAsync<string[]>($"[...document.querySelectorAll('#results tbody tr')].map(tr => " +
            $"tr.cells[{probability}].textContent.trim())"))
            .Select(p => double.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(sorted.Order(), sorted);
        Assert.Equal(expected.Select(p => double.Parse(p.ToString("F6", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)).Order(), sorted);

        // A bad file: the server's refusal shown in one line on the page.
        await browser.DropFileAsync("#drop", "bad.csv", "danceability,energy\n0.5,0.5\n");
        await browser.WaitForAsync("document.body.dataset.csv === 'error'", Patience);
        string error = await browser.EvaluateAsync<string>("document.getElementById('error').textContent");
        Assert.Contains("missing column 'key'", error);
        Assert.Empty(browser.PageErrors);
    }
}

// A headless Chromium for the page's tests: a thin layer over PuppeteerSharp that uses the system's Chromium (no browser download).
using PuppeteerSharp;

namespace HitGpu.Serve.Tests;

public sealed class Browser : IAsyncDisposable
{
    private static readonly string[] Flags =
    [
        // Root in a container has no user namespaces for the sandbox; the rest keep Chromium from reaching out or doing first-run work.
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
    ];

    private readonly IBrowser browser;
    private readonly IPage page;
    private readonly DirectoryInfo profile;
    private readonly List<string> pageErrors = [];

    private Browser(IBrowser browser, IPage page, DirectoryInfo profile)
    {
        this.browser = browser;
        this.page = page;
        this.profile = profile;
        page.PageError += (_, e) => Record($"page error: {e.Message}");
        page.Console += (_, e) =>
        {
            // Chromium also logs every 4xx/5xx answer as a console error; the tests that want those check them themselves.
            if (e.Message.Type == ConsoleType.Error && !e.Message.Text.StartsWith("Failed to load resource", StringComparison.Ordinal))
                Record($"console error: {e.Message.Text}");
        };
    }

    /// <summary>The Chromium executable to test with (HITGPU_CHROMIUM, else the usual install paths), or null when there is none.</summary>
    public static string? ChromiumPath { get; } = FindChromium();

    /// <summary>Uncaught exceptions and console.error messages of the page so far (not failed requests), for a test to assert there were none.</summary>
    public IReadOnlyList<string> PageErrors
    {
        get
        {
            lock (pageErrors)
                return [.. pageErrors];
        }
    }

    /// <summary>Starts Chromium on a fresh profile with one 1280x900 page.</summary>
    public static async Task<Browser> LaunchAsync()
    {
        string executable = ChromiumPath ?? throw new InvalidOperationException("no Chromium installed (set HITGPU_CHROMIUM or install chromium)");
        var profile = Directory.CreateTempSubdirectory("hitgpu-chromium-");
        IBrowser? browser = null;
        try
        {
            browser = await Puppeteer.LaunchAsync(new LaunchOptions
            {
                ExecutablePath = executable,
                HeadlessMode = HeadlessMode.True,
                UserDataDir = profile.FullName,
                Args = Flags,
                DefaultViewport = new ViewPortOptions { Width = 1280, Height = 900 },
            });
            var pages = await browser.PagesAsync();
            var page = pages.Length > 0 ? pages[0] : await browser.NewPageAsync();
            return new Browser(browser, page, profile);
        }
        catch
        {
            if (browser is not null)
                await browser.DisposeAsync();
            DeleteProfile(profile);
            throw;
        }
    }

    /// <summary>Opens the address and waits for its load event; an answer other than 2xx is an error.</summary>
    public async Task NavigateAsync(string url)
    {
        var response = await page.GoToAsync(url, WaitUntilNavigation.Load);
        if (response is not null && !response.Ok)
            throw new InvalidOperationException($"GET {url}: HTTP {(int)response.Status}");
    }

    /// <summary>The value of a JavaScript expression, awaited when it is a promise, converted from JSON.</summary>
    public Task<T> EvaluateAsync<T>(string expression) => page.EvaluateExpressionAsync<T>(expression);

    /// <summary>Runs a JavaScript expression for its effect, awaited when it is a promise.</summary>
    public Task EvaluateAsync(string expression) => page.EvaluateExpressionAsync(expression);

    /// <summary>Waits until the JavaScript expression is truthy; a TimeoutException names it and the page's errors.</summary>
    public async Task WaitForAsync(string jsCondition, TimeSpan timeout)
    {
        try
        {
            await page.WaitForExpressionAsync(jsCondition, new WaitForFunctionOptions { Timeout = (int)timeout.TotalMilliseconds });
        }
        catch (WaitTaskTimeoutException e)
        {
            string errors = PageErrors.Count == 0 ? "" : $" (page: {string.Join("; ", PageErrors)})";
            throw new TimeoutException($"not true after {timeout.TotalSeconds:0.#} s: {jsCondition}{errors}", e);
        }
    }

    /// <summary>Drops a text file on the element, as a user dragging it from a file manager would (dragenter, dragover, drop).</summary>
    public Task DropFileAsync(string selector, string fileName, string text) =>
        page.EvaluateFunctionAsync(
            """
            (selector, fileName, text) => {
              const target = document.querySelector(selector);
              if (!target) throw new Error(`no element ${selector}`);
              const data = new DataTransfer();
              data.items.add(new File([text], fileName, { type: 'text/csv' }));
              for (const type of ['dragenter', 'dragover', 'drop'])
                target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data }));
            }
            """,
            selector, fileName, text);

    /// <summary>Puts a file from disk into an &lt;input type="file"&gt;, which fires its input and change events.</summary>
    public async Task UploadFileAsync(string selector, string path)
    {
        var input = await page.QuerySelectorAsync(selector) ?? throw new InvalidOperationException($"no element {selector}");
        await input.UploadFileAsync(path);
    }

    /// <summary>A PNG of the viewport, resized to width x height first.</summary>
    public async Task ScreenshotAsync(string pngPath, int width, int height)
    {
        await page.SetViewportAsync(new ViewPortOptions { Width = width, Height = height });
        string? folder = Path.GetDirectoryName(Path.GetFullPath(pngPath));
        if (folder is not null)
            Directory.CreateDirectory(folder);
        await page.ScreenshotAsync(pngPath, new ScreenshotOptions { Type = ScreenshotType.Png });
    }

    /// <summary>Closes Chromium (killing it if it does not close) and deletes its profile folder.</summary>
    public async ValueTask DisposeAsync()
    {
        var process = browser.Process;
        try
        {
            await browser.CloseAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is TimeoutException or PuppeteerException or IOException)
        {
            // Closing failed or hung: the kill below ends it.
        }
        finally
        {
            await browser.DisposeAsync();
            await KillAsync(process);
            DeleteProfile(profile);
        }
    }

    private void Record(string message)
    {
        lock (pageErrors)
            pageErrors.Add(message);
    }

    private static async Task KillAsync(System.Diagnostics.Process? process)
    {
        try
        {
            if (process is null || process.HasExited)
                return;
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            // Already gone (or PuppeteerSharp disposed the Process object): nothing left to end.
        }
    }

    private static string? FindChromium()
    {
        string? configured = Environment.GetEnvironmentVariable("HITGPU_CHROMIUM");
        if (!string.IsNullOrEmpty(configured))
            return File.Exists(configured) ? configured : null;
        string[] candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"];
        return candidates.FirstOrDefault(File.Exists);
    }

    // Chromium's helper processes can still be writing to the profile for a moment after the browser exits; a folder that will not go
    // is left to the system's temp cleanup rather than failing the test that used it.
    private static void DeleteProfile(DirectoryInfo profile)
    {
        for (int attempt = 0; attempt < 10; attempt++)
        {
            try
            {
                profile.Refresh();
                if (profile.Exists)
                    profile.Delete(recursive: true);
                return;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Thread.Sleep(100);
            }
        }
    }
}

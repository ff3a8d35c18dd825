// `hitgpu serve` as a user runs it: a process that says where it listens, answers, and on SIGTERM (what
// Kubernetes and systemd send; Ctrl+C's SIGINT goes the same way) finishes the requests in flight before it
// exits 0. Bad options and a port in use: one line, exit 2, before anything is served.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using HitGpu.Cli;
using static HitGpu.Nn.Tests.CliRunner;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed partial class ServeCommandTests(ServerFixture server)
{
    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    private const int SigTerm = 15, SigInt = 2;

    [GeneratedRegex(@"^listening on (http://\S+?)[ ,]")]
    private static partial Regex Listening();

    /// <summary>hitgpu serve in its own process (the tool's assembly beside the tests), and the address it printed.</summary>
    internal static Task<(Process Process, string Address, List<string> Output)> StartServe(params string[] args)
        => StartServe(new Dictionary<string, string>(), args);

    private static async Task<(Process Process, string Address, List<string> Output)> StartServe(Dictionary<string, string> environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment)
            start.Environment[name] = value;
        foreach (string arg in (string[])[Path.Combine(AppContext.BaseDirectory, "hitgpu.dll"), "serve", "--port", "0", .. args])
            start.ArgumentList.Add(arg);
        var process = Process.Start(start)!;
        var output = new List<string>();
        var address = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            lock (output)
                output.Add(e.Data);
            if (Listening().Match(e.Data) is { Success: true } m)
                address.TrySetResult(m.Groups[1].Value);
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.Add("stderr: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var started = await Task.WhenAny(address.Task, process.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.True(started == address.Task, $"hitgpu serve did not say where it listens: {string.Join(" | ", output)}");
        return (process, address.Task.Result, output);
    }

    /// <summary>The first line of the process's output that starts so, waited for (it may follow the listening line by a moment).</summary>
    internal static async Task<string> Line(List<string> output, string start)
    {
        for (int wait = 0; wait < 100; wait++, await Task.Delay(100))
            lock (output)
                if (output.FirstOrDefault(l => l.StartsWith(start, StringComparison.Ordinal)) is { } line)
                    return line;
        lock (output)
            throw new Xunit.Sdk.XunitException($"hitgpu serve said no line starting '{start}': {string.Join(" | ", output)}");
    }

    [Theory]
    [InlineData(SigTerm)]
    [InlineData(SigInt)]
    public async Task A_stop_signal_lets_the_requests_in_flight_finish_then_exits_0(int signal)
    {
        var (process, address, output) = await StartServe("--model", server.ModelPath, "--name", "hits");
        using (process)
        {
            using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromMinutes(2) };
            Assert.Equal(HttpStatusCode.OK, (await Get(client, "/v2/health/ready")).Status);
            // Explanations of 400 songs take a while: the stop comes while they are being computed.
            var features = Features(1000, 400);
            var inFlight = Post(client, "/predict?explain=true", Records(features));
            await Task.Delay(300);
            Assert.False(inFlight.IsCompleted, "the request finished before the stop: nothing was in flight");
            Assert.Equal(0, kill(process.Id, signal));
            var (status, body, _) = await inFlight;
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(400, System.Text.Json.Nodes.JsonNode.Parse(body)!.AsArray().Count);
            // Within the drain (30 s, --drain-s) after the stop, with room for a loaded machine: once in CI (stop 35,
            // the other serve tests running beside it) it had not exited 30 s after its last answer; the lines it
            // wrote are in the message, for the next time.
            if (!process.WaitForExit(TimeSpan.FromSeconds(45)))
                lock (output)
                    Assert.Fail($"hitgpu serve did not exit within 45 s of its last answer after the stop: {string.Join(" | ", output)}");
            Assert.Equal(0, process.ExitCode);
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.GetAsync("/v2/health/live"));
            lock (output)
            {
                Assert.Contains(output, line => line.Contains("POST /predict?explain=true rows=400 status=200", StringComparison.Ordinal));
                Assert.Contains(output, line => line.StartsWith("stopped after", StringComparison.Ordinal));
                Assert.DoesNotContain(output, line => line.StartsWith("stderr:", StringComparison.Ordinal));
            }
        }
    }

    [Fact]
    public async Task Allowed_hosts_are_given_comma_separated()
    {
        var (process, address, _) = await StartServe("--model", server.ModelPath, "--name", "hits", "--allowed-hosts", "hits.example, localhost");
        using (process)
        {
            try
            {
                using var client = new HttpClient { BaseAddress = new Uri(address) };
                foreach (var (host, status) in new[] { ("hits.example", HttpStatusCode.OK), ("localhost", HttpStatusCode.OK),
                    ("127.0.0.1", HttpStatusCode.BadRequest) })
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, "/v2/health/live");
                    request.Headers.Host = host;
                    using var response = await client.SendAsync(request);
                    Assert.True(status == response.StatusCode, $"{host}: {response.StatusCode}");
                    if (status == HttpStatusCode.BadRequest) // the refusal names the flag, as the CLI's user knows it
                        Assert.Equal($"the Host '{host}' is refused: it is not one this server answers to (--allowed-hosts)",
                            Error(await response.Content.ReadAsStringAsync()));
                }
            }
            finally
            {
                process.Kill();
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_api_key_comes_from_the_flag_or_the_environment(bool fromEnvironment)
    {
        const string key = "key-of-the-test";
        var (process, address, _) = fromEnvironment
            ? await StartServe(new Dictionary<string, string> { [ServeCommand.ApiKeyVariable] = key }, "--model", server.ModelPath, "--name", "hits")
            : await StartServe("--model", server.ModelPath, "--name", "hits", "--api-key", key);
        using (process)
        {
            try
            {
                using var client = new HttpClient { BaseAddress = new Uri(address) };
                Assert.Equal(HttpStatusCode.OK, (await Get(client, "/v2/health/ready")).Status);
                Assert.Equal(HttpStatusCode.Unauthorized, (await Get(client, "/v2/models/hits")).Status);
                client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
                Assert.Equal(HttpStatusCode.OK, (await Get(client, "/v2/models/hits")).Status);
            }
            finally
            {
                process.Kill();
            }
        }
    }

    [Fact]
    public void A_port_in_use_is_one_line_and_exit_2()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var (code, _, error) = Run("serve", "--model", server.ModelPath, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(2, code);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
        Assert.StartsWith("hitgpu: error: ", error);
        Assert.Contains(port.ToString(System.Globalization.CultureInfo.InvariantCulture), error);
    }

    [Fact]
    public void A_host_that_sets_the_options_reads_their_property_names_not_flags()
    {
        var error = Assert.Throws<ArgumentException>(() => new ServeOptions { Name = "hits", Port = 70000 }.Validate());
        Assert.Equal("ServeOptions.Port must be from 0 to 65535, got 70000", error.Message);
        var window = Assert.Throws<ArgumentException>(() => new ServeOptions { Name = "hits", BatchWindow = TimeSpan.FromSeconds(2) }.Validate());
        Assert.DoesNotContain("--", window.Message);
        Assert.Contains("ServeOptions.BatchWindow", window.Message);
    }

    /// <summary>A refusal for too many songs, and the in-flight gauge's help, from a server with at most 2 songs a request.</summary>
    private static async Task<(string Refusal, string Help)> RowsRefusalAndHelp(string address, string metrics)
    {
        using var client = new HttpClient { BaseAddress = new Uri(address) };
        var (status, body, _) = await Post(client, "/predict", Records(Features(0, 3)));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        string scrape = await client.GetStringAsync(metrics);
        return (Error(body), scrape.Split('\n').Single(line => line.StartsWith("# HELP hitgpu_requests_in_flight ", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_server_a_host_builds_refuses_in_property_names_and_hitgpu_serve_in_its_flags()
    {
        await using (var built = await server.StartAsync(server.Model, new ServeOptions { Name = "hits", Port = 0, MetricsPort = 0, MaxRows = 2 }))
        {
            var (refusal, help) = await RowsRefusalAndHelp(built.Addresses[0], built.MetricsAddresses[0] + "/metrics");
            Assert.Equal("request body: 3 songs, more than the 2 a request may send (ServeOptions.MaxRows)", refusal);
            Assert.EndsWith("(at most ServeOptions.MaxInFlight).", help);
        }
        // A host's own words pass the same way, for the pipeline's refusals (the Host) as for the handlers'.
        await using (var worded = await server.StartAsync(server.Model, new ServeOptions
            { Name = "hits", Port = 0, MaxRows = 2, AllowedHosts = ["hits.example"], InHostWords = m => m.Replace("ServeOptions.", "serving.") }))
        {
            using var client = ServerFixture.ClientOf(worded);
            using var request = new HttpRequestMessage(HttpMethod.Get, "/v2/health/live");
            request.Headers.Host = "other.example";
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.EndsWith("(serving.AllowedHosts)", Error(await response.Content.ReadAsStringAsync()));
            client.DefaultRequestHeaders.Host = "hits.example";
            Assert.EndsWith("(serving.MaxRows)", Error((await Post(client, "/predict", Records(Features(0, 3)))).Body));
        }

        var (process, address, output) = await StartServe("--model", server.ModelPath, "--name", "hits", "--max-rows", "2", "--metrics-port", "0");
        using (process)
        {
            try
            {
                string metrics = (await Line(output, "metrics on ")).Split(' ')[2];
                var (refusal, help) = await RowsRefusalAndHelp(address, metrics);
                Assert.Equal("request body: 3 songs, more than the 2 a request may send (--max-rows)", refusal);
                Assert.EndsWith("(at most --max-in-flight).", help);
            }
            finally
            {
                process.Kill();
            }
        }
    }

    [Theory]
    [InlineData("--name", "my model", "hitgpu: error: --name: 'my model' cannot be a model name in a URL path")]
    [InlineData("--port", "70000", "hitgpu: error: --port must be from 0 to 65535, got 70000")]
    [InlineData("--grpc-port", "70000", "hitgpu: error: --grpc-port must be from 0 to 65535, got 70000")]
    [InlineData("--metrics-port", "8080", "hitgpu: error: --metrics-port must differ from --port and --grpc-port (metrics have their own port)")]
    [InlineData("--batch-window-ms", "-1", "hitgpu: error: --batch-window-ms must be from 0 to 1000 ms, got -1 ms")]
    [InlineData("--max-rows", "0", "hitgpu: error: --max-rows must be at least 1, got 0")]
    [InlineData("--max-body-mb", "0", "hitgpu: error: --max-body-mb must be from 1 KiB to 1 GiB, got 0 MiB")]
    [InlineData("--max-body-mb", "4096", "hitgpu: error: --max-body-mb must be from 1 KiB to 1 GiB, got 4096 MiB")]
    [InlineData("--batch-window-ms", "NaN", "hitgpu: error: --batch-window-ms must be a number within its range, got NaN")] // the value given, not 1e9
    [InlineData("--batch-window-ms", "1e300", "hitgpu: error: --batch-window-ms must be a number within its range, got 1E+300")]
    [InlineData("--max-in-flight", "0", "hitgpu: error: --max-in-flight must be at least 1, got 0")]
    [InlineData("--max-uploads", "0", "hitgpu: error: --max-uploads must be at least 1, got 0")]
    [InlineData("--min-body-rate", "0", "hitgpu: error: --min-body-rate must be from 1 to 1e9 bytes/s, got 0")]
    [InlineData("--body-timeout-s", "0.5", "hitgpu: error: --body-timeout-s must be from 1 to 3600 s, got 0.5 s")]
    [InlineData("--max-explain-songs", "0", "hitgpu: error: --max-explain-songs must be at least 1, got 0")]
    [InlineData("--drain-s", "NaN", "hitgpu: error: --drain-s must be a number within its range, got NaN")]
    [InlineData("--drain-s", "0", "hitgpu: error: --drain-s must be from 1 to 3600 s, got 0 s")]
    [InlineData("--api-key", " ",
        "hitgpu: error: --api-key (or HITGPU_API_KEY) must be printable ASCII without spaces (it travels in a header), and not empty")]
    [InlineData("--api-key", "clé", "hitgpu: error: --api-key (or HITGPU_API_KEY) must be printable ASCII without spaces")]
    [InlineData("--allowed-hosts", "a.example,,b.example", "hitgpu: error: --allowed-hosts: '' cannot be a host name")]
    [InlineData("--allowed-hosts", "a.example:80", "hitgpu: error: --allowed-hosts: 'a.example:80' cannot be a host name")]
    public void A_bad_option_is_one_line_and_exit_2(string option, string value, string expected)
    {
        var (code, _, error) = Run("serve", "--model", server.ModelPath, option, value);
        Assert.Equal(2, code);
        Assert.StartsWith(expected, error);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void A_missing_model_file_is_one_line_and_exit_2()
    {
        string missing = Path.Combine(server.Folder, "missing.hitgpu");
        var (code, _, error) = Run("serve", "--model", missing);
        Assert.Equal(2, code);
        Assert.Equal($"hitgpu: error: {missing}: model file not found\n", error);
    }
}

// hitgpu serve: the model behind HTTP (HitGpu.Serve): KServe's Open Inference Protocol, /predict for CSV and
// JSON records, and a page for people at /. Runs until Ctrl+C or SIGTERM, then drains the requests in flight.
using System.CommandLine;
using HitGpu.Nn;
using HitGpu.Serve;

namespace HitGpu.Cli;

public static class ServeCommand
{
    public static Command Create(TextWriter output)
    {
        var model = HitGpuCli.PathOption("--model", "model file written by hitgpu train --out", required: true);
        var name = new Option<string?>("--name") { Description = "the model's name in the protocol's paths (/v2/models/NAME); default: the file's name without its extension" };
        var host = new Option<string>("--host") { Description = "address to listen on (0.0.0.0: every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port to listen on (0: any free port)", DefaultValueFactory = _ => 8080 };
        var window = new Option<double?>("--batch-window-ms") { Description = "how long a request waits for others to be scored in the same launch (0: no waiting; default: 2 on a GPU, 0 on the CPU)" };
        var maxRows = new Option<int>("--max-rows") { Description = "most songs one request may send (413 beyond)", DefaultValueFactory = _ => 10_000 };
        var maxBody = new Option<double>("--max-body-mb") { Description = "largest request body in MiB (413 beyond)", DefaultValueFactory = _ => 16 };
        var steps = new Option<int>("--explain-steps") { Description = "points on each song's integrated-gradients path for ?explain=true", DefaultValueFactory = _ => 64 };
        var quiet = new Option<bool>("--quiet") { Description = "no line per request" };
        var accelerator = HitGpuCli.AcceleratorOption();
        var command = new Command("serve", "Serve a saved model over HTTP: KServe v2 inference, CSV/JSON /predict, and a page at /")
            { model, name, host, port, window, maxRows, maxBody, steps, quiet, accelerator };
        command.SetAction(parsed =>
        {
            string path = parsed.GetValue(model)!;
            if (parsed.GetValue(window) is < 0 or > 1000 or double.NaN)
                throw new ArgumentException($"--batch-window-ms must be from 0 to 1000, got {parsed.GetValue(window)}");
            if (parsed.GetValue(maxBody) is not (>= 1.0 / 1024 and <= 1 << 20))
                throw new ArgumentException($"--max-body-mb must be from 0.001 to 1048576, got {parsed.GetValue(maxBody)}");
            var options = new ServeOptions
            {
                Name = parsed.GetValue(name) ?? Path.GetFileNameWithoutExtension(path),
                ModelFile = path,
                Host = parsed.GetValue(host)!,
                Port = parsed.GetValue(port),
                BatchWindow = parsed.GetValue(window) is { } ms ? TimeSpan.FromMilliseconds(ms) : null,
                MaxRows = parsed.GetValue(maxRows),
                MaxBodyBytes = (long)(parsed.GetValue(maxBody) * (1 << 20)),
                ExplainSteps = parsed.GetValue(steps),
                RequestLog = parsed.GetValue(quiet) ? null : output,
            };
            options.Validate(); // before the model loads: a bad option is said at once
            var hitModel = ModelFile.Load(path);
            using var device = HitGpuCli.OpenDevice(parsed.GetValue(accelerator)!);
            var server = HitServer.StartAsync(hitModel, device, options).GetAwaiter().GetResult();
            try
            {
                output.WriteLine($"listening on {string.Join(", ", server.Addresses)} (model {options.Name}: the page at /, CSV or JSON at /predict, " +
                    $"KServe v2 at /v2/models/{options.Name}/infer; Ctrl+C stops)");
                output.Flush();
                server.WaitForShutdownAsync().GetAwaiter().GetResult();
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            output.WriteLine($"stopped after {server.Endpoints.Queue.ScoredRequests} scoring requests in {server.Endpoints.Queue.Launches} launches");
            return HitGpuCli.Ok;
        });
        return command;
    }
}

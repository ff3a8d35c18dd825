// `hitgpu serve --accelerator cuda` answering an inference request as the CPU accelerator answers it. Runs where
// the tests run on CUDA (HITGPU_TEST_ACCELERATOR=cuda: a GPU, or the simulated GPU of bench/gpusim/run.sh);
// elsewhere it says why it does not.
using System.Net;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

public sealed class CudaServeTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-cuda-serve-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public async Task Serve_on_cuda_answers_an_infer_request_as_the_CPU_does()
    {
        Assert.SkipUnless(Environment.GetEnvironmentVariable("HITGPU_TEST_ACCELERATOR") == "cuda",
            "runs where the tests run on CUDA (HITGPU_TEST_ACCELERATOR=cuda)");
        string model = Path.Combine(folder, "hits.hitgpu");
        var error = new StringWriter();
        Assert.True(Cli.HitGpuCli.Run(["train", "--study", "--epochs", "1", "--accelerator", "cpu", "--out", model], new StringWriter(), error) == 0,
            error.ToString());
        var (process, address, output) = await ServeCommandTests.StartServe("--model", model, "--name", "hits", "--accelerator", "cuda");
        using (process)
        {
            try
            {
                using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromMinutes(5) };
                var features = Features(101, 7);
                var (status, body, _) = await Post(client, "/v2/models/hits/infer", Infer(features));
                Assert.True(status == HttpStatusCode.OK, body);
                using var cpu = ComputeDevice.Open(AcceleratorKind.Cpu);
                var expected = ModelFile.Load(model).PredictProbabilities(cpu, new SongTable { Source = "test", Features = features });
                var actual = Probabilities(body);
                Assert.Equal(expected.Length, actual.Length);
                for (int i = 0; i < expected.Length; i++)
                    Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 + 1e-4 * Math.Abs(expected[i]), $"song {i}: CPU {expected[i]}, CUDA {actual[i]}");
                lock (output)
                    Assert.Contains(output, line => line.Contains("POST /v2/models/hits/infer rows=7 status=200", StringComparison.Ordinal));
            }
            finally
            {
                if (!process.HasExited)
                    process.Kill();
            }
        }
    }
}

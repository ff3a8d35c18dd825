// hitgpu train and predict on CUDA, on both of a GPU's training paths, held to the same runs on the CPU
// accelerator: the same epochs to the tolerance of the golden tests' steps, the path line the plan prints, and a
// CUDA-trained model that predicts the same on the CPU. Runs where the tests run on CUDA (HITGPU_TEST_ACCELERATOR=cuda:
// a GPU, or the simulated GPU of bench/gpusim/run.sh); elsewhere it says why it does not.
using System.Globalization;
using System.Text.RegularExpressions;
using static HitGpu.Nn.Tests.CliRunner;

namespace HitGpu.Nn.Tests;

[Collection(Name)]
public sealed partial class CudaCliTests : IDisposable
{
    public const string Name = "environment"; // the training path is read from the environment: no test beside these

    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-cuda-cli-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [GeneratedRegex(@"^epoch +(\d+)/\d+ +loss (\S+) +accuracy (\S+)% +val_loss (\S+) +val_accuracy (\S+)%", RegexOptions.Multiline)]
    private static partial Regex EpochLine();

    /// <summary>Each epoch's training loss, training accuracy, validation loss and accuracy, as train printed them.</summary>
    private static double[][] Epochs(string output) =>
        EpochLine().Matches(output).Select(m => Enumerable.Range(2, 4).Select(g
            => double.Parse(m.Groups[g].Value, CultureInfo.InvariantCulture)).ToArray()).ToArray();

    // The default ensemble (three members, dropout) in batches of 32 does not fit a group's shared memory below
    // about 120 KB (the simulated V100 has 64 KB), so the plan trains it layered whatever the override says; in
    // batches of 8 it takes about 59 KB, past the 48 KB any kernel may take: the GPU epoch's opt-in.
    [Theory]
    [InlineData("layered", "32", "training path: layered")]
    [InlineData("gpu-epoch", "8", "training path: the GPU epoch (one launch an epoch)")]
    public void Train_and_predict_on_cuda_agree_with_the_CPU(string path, string batchSize, string pathLine)
    {
        Assert.SkipUnless(Environment.GetEnvironmentVariable("HITGPU_TEST_ACCELERATOR") == "cuda",
            "runs where the tests run on CUDA (HITGPU_TEST_ACCELERATOR=cuda)");
        // 300 songs of both classes, the defaults, two epochs.
        var songs = SongData.LoadEmbedded90s();
        string data = Path.Combine(folder, "songs.csv");
        SongData.WriteCsv(songs.Subset(Enumerable.Range(0, 300).Select(i => i * 137 % songs.Count).ToArray()), data);
        // Both accelerators shuffle with the device's permutation kernel: by default a GPU does, the CPU accelerator
        // shuffles on the host, and the two orders differ.
        string[] variables = ["HITGPU_TRAINING_PATH", "HITGPU_SHUFFLE"];
        var before = variables.Select(Environment.GetEnvironmentVariable).ToArray();
        Environment.SetEnvironmentVariable("HITGPU_TRAINING_PATH", path);
        Environment.SetEnvironmentVariable("HITGPU_SHUFFLE", "device");
        try
        {
            var runs = new Dictionary<string, string>();
            foreach (string accelerator in new[] { "cuda", "cpu" })
            {
                var (code, output, error) = Run("train", "--data", data, "--epochs", "2", "--batch-size", batchSize, "--accelerator", accelerator,
                    "--out", Path.Combine(folder, accelerator + ".hitgpu"));
                Assert.True(code == 0, error);
                runs[accelerator] = output;
            }
            Assert.Contains("\n" + pathLine, runs["cuda"]);
            double[][] cuda = Epochs(runs["cuda"]), cpu = Epochs(runs["cpu"]);
            Assert.Equal(2, cuda.Length);
            Assert.Equal(cpu.Length, cuda.Length);
            // Losses as printed (4 decimals) to 1e-3; accuracies to one song: of the 210 trained on (0.48 points), of
            // the 45 validated on (2.2 points).
            double[] tolerance = [1e-3, 100.0 / 210 + 1e-6, 1e-3, 100.0 / 45 + 1e-6];
            for (int e = 0; e < cuda.Length; e++)
                for (int f = 0; f < 4; f++)
                    Assert.True(Math.Abs(cuda[e][f] - cpu[e][f]) <= tolerance[f], $"epoch {e + 1}, figure {f}: CUDA {cuda[e][f]}, CPU {cpu[e][f]}");

            // The CUDA-trained model predicts on CUDA and on the CPU alike.
            var predictions = new Dictionary<string, float[]>();
            foreach (string accelerator in new[] { "cuda", "cpu" })
            {
                string answer = Path.Combine(folder, accelerator + ".csv");
                var (code, _, error) = Run("predict", "--model", Path.Combine(folder, "cuda.hitgpu"), "--data", data, "--accelerator", accelerator,
                    "--out", answer);
                Assert.True(code == 0, error);
                var lines = File.ReadAllLines(answer);
                int column = Array.IndexOf(CsvText.Split(lines[0]), "probability");
                Assert.True(column >= 0, lines[0]);
                predictions[accelerator] = lines[1..].Select(l => float.Parse(CsvText.Split(l)[column], CultureInfo.InvariantCulture)).ToArray();
            }
            Assert.Equal(300, predictions["cuda"].Length);
            Tolerance.AllClose(predictions["cpu"], predictions["cuda"], "P(hit) of the CUDA-trained model, CPU against CUDA", abs: 1e-5, rel: 1e-4);
        }
        finally
        {
            for (int i = 0; i < variables.Length; i++)
                Environment.SetEnvironmentVariable(variables[i], before[i]);
        }
    }
}

[CollectionDefinition(CudaCliTests.Name, DisableParallelization = true)]
public sealed class EnvironmentCollection;

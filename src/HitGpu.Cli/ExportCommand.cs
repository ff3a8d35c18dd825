// hitgpu export: a saved model as an ONNX file that takes the 15 raw features and returns P(hit), preprocessing
// and every ensemble member included, for ONNX Runtime or any other ONNX reader.
using System.CommandLine;
using HitGpu.Nn;
using HitGpu.Nn.Onnx;

namespace HitGpu.Cli;

public static class ExportCommand
{
    public static Command Create(TextWriter output)
    {
        var model = HitGpuCli.PathOption("--model", "model file written by hitgpu train --out", required: true);
        var onnx = HitGpuCli.PathOption("--onnx", "write the model as ONNX to this file", required: true);
        var command = new Command("export", "Write a saved model as ONNX (15 raw features in, P(hit) out)") { model, onnx };
        command.SetAction(parsed =>
        {
            string path = parsed.GetValue(onnx)!;
            HitGpuCli.CheckOutputs([path], [], [parsed.GetValue(model)]);
            var hitModel = ModelFile.Load(parsed.GetValue(model)!);
            OnnxExport.Save(hitModel, path);
            output.WriteLine($"ONNX model written to {path}: input '{OnnxExport.InputName}' (N, {SongData.FeatureCount}) float32, " +
                $"the features in the order {string.Join(",", SongData.FeatureNames)}; output '{OnnxExport.OutputName}' (N) float32; opset {OnnxExport.Opset}");
            return HitGpuCli.Ok;
        });
        return command;
    }
}

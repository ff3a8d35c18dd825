// hitgpu evaluate: a saved model against a labelled CSV: accuracy, precision, recall, F1, ROC AUC, log loss
// and the confusion matrix, as a table or as JSON; optionally the ROC curve as a PNG.
using System.CommandLine;
using System.Text.Json;
using HitGpu.Nn;

namespace HitGpu.Cli;

public static class EvaluateCommand
{
    public static Command Create(TextWriter output)
    {
        var model = HitGpuCli.PathOption("--model", "model file written by hitgpu train --out", required: true);
        var data = HitGpuCli.DataOption("labelled CSV file(s) or folder(s); default: the embedded 90s file");
        var accelerator = HitGpuCli.AcceleratorOption();
        var json = new Option<bool>("--json") { Description = "print the metrics as JSON" };
        var plot = HitGpuCli.PathOption("--plot", "write roc.png into this folder");
        var format = new HitGpuCli.FormatOptions();
        var command = new Command("evaluate", "Measure a saved model on labelled songs") { model, data, accelerator, json, plot };
        format.AddTo(command);
        command.SetAction(parsed =>
        {
            string? plotFolder = parsed.GetValue(plot);
            HitGpuCli.CheckOutputs([plotFolder is null ? null : Path.Combine(plotFolder, Plots.RocFile)], [plotFolder],
                [parsed.GetValue(model), .. parsed.GetValue(data) ?? []]);
            var hitModel = ModelFile.Load(parsed.GetValue(model)!);
            var songs = HitGpuCli.LoadData(parsed.GetValue(data), keepNames: false, format.Read(parsed));
            using var device = HitGpuCli.OpenDevice(parsed.GetValue(accelerator)!);
            var evaluation = Evaluation.Of(hitModel.PredictProbabilities(device, songs), songs.Labels!);
            if (parsed.GetValue(json))
                output.WriteLine(JsonSerializer.Serialize(new
                {
                    songs = evaluation.Count, accuracy = evaluation.Accuracy, precision = evaluation.Precision, recall = evaluation.Recall,
                    f1 = evaluation.F1, roc_auc = evaluation.RocAuc, log_loss = evaluation.LogLoss,
                    confusion = new
                    {
                        true_positives = evaluation.Confusion.TruePositives, false_positives = evaluation.Confusion.FalsePositives,
                        true_negatives = evaluation.Confusion.TrueNegatives, false_negatives = evaluation.Confusion.FalseNegatives,
                    },
                }, new JsonSerializerOptions { WriteIndented = true }));
            else
                output.Write(Table(evaluation, songs.Source));
            if (plotFolder is not null)
            {
                string path = Path.Combine(plotFolder, Plots.RocFile);
                HitGpuCli.WriteAll([plotFolder], () => Plots.Roc(evaluation, path));
                if (!parsed.GetValue(json))
                    output.WriteLine($"ROC curve written to {path}");
            }
            return HitGpuCli.Ok;
        });
        return command;
    }

    public static string Table(Evaluation e, string source)
    {
        var c = e.Confusion;
        return $"""
            {e.Count} songs from {source}
              accuracy   {HitGpuCli.Percent(e.Accuracy)}
              precision  {HitGpuCli.Percent(e.Precision)}
              recall     {HitGpuCli.Percent(e.Recall)}
              F1         {e.F1:F4}
              ROC AUC    {e.RocAuc:F4}
              log loss   {e.LogLoss:F4}

                              predicted hit   predicted not
              actual hit      {c.TruePositives,13}   {c.FalseNegatives,13}
              actual not      {c.FalsePositives,13}   {c.TrueNegatives,13}

            """;
    }
}

// PNG plots with ScottPlot, rendered headless (SkiaSharp): training curves per epoch, the ROC curve, feature importances.
// Each file is written atomically, like every other output.
using ScottPlot;

namespace HitGpu.Nn;

public static class Plots
{
    private const int Width = 900, Height = 560;

    /// <summary>The files <see cref="TrainingCurves"/> writes into its folder.</summary>
    public static readonly string[] TrainingCurveFiles = ["loss.png", "accuracy.png"];

    /// <summary>The file the ROC curve goes to in a plot folder.</summary>
    public const string RocFile = "roc.png";

    /// <summary>The file the permutation importances go to in a plot folder.</summary>
    public const string ImportanceFile = "importance.png";

    /// <summary>
    /// Writes loss.png and accuracy.png (training and validation per epoch) into a folder; returns their paths.
    /// </summary>
    public static IReadOnlyList<string> TrainingCurves(IReadOnlyList<EpochMetrics> history, string folder)
    {
        double[] epochs = history.Select(h => (double)h.Epoch).ToArray();
        string loss = Path.Combine(folder, TrainingCurveFiles[0]);
        Save(loss, "Binary cross-entropy per epoch", "epoch", "loss", Alignment.UpperRight, integerX: true,
            ("training", epochs, history.Select(h => h.TrainLoss).ToArray()),
            ("validation", epochs, history.Select(h => h.ValidationLoss).ToArray()));
        string accuracy = Path.Combine(folder, TrainingCurveFiles[1]);
        Save(accuracy, "Accuracy per epoch", "epoch", "accuracy (%)", Alignment.LowerRight, integerX: true,
            ("training", epochs, history.Select(h => h.TrainAccuracy * 100).ToArray()),
            ("validation", epochs, history.Select(h => h.ValidationAccuracy * 100).ToArray()));
        return [loss, accuracy];
    }

    /// <summary>Writes the ROC curve of an evaluation, with the chance diagonal, to a PNG file.</summary>
    public static void Roc(Evaluation evaluation, string path)
    {
        var fpr = evaluation.Roc.Select(p => p.FalsePositiveRate).ToArray();
        var tpr = evaluation.Roc.Select(p => p.TruePositiveRate).ToArray();
        Save(path, $"ROC curve (AUC {evaluation.RocAuc:F4}, {evaluation.Count} songs)", "false positive rate", "true positive rate",
            Alignment.LowerRight, integerX: false,
            ("model", fpr, tpr), ("chance", [0.0, 1.0], [0.0, 1.0]));
    }

    /// <summary>A horizontal bar chart of one value per named item, largest on top (e.g. permutation importance).</summary>
    public static void Bars(IReadOnlyList<string> names, IReadOnlyList<double> values, string title, string xLabel, string path)
    {
        var order = Enumerable.Range(0, names.Count).OrderBy(i => values[i]).ToArray(); // the bottom bar first
        var plot = new Plot();
        var bars = plot.Add.Bars(Enumerable.Range(0, order.Length).Select(k => (double)k), order.Select(i => values[i]));
        bars.Horizontal = true;
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, order.Length).Select(k => (double)k).ToArray(), order.Select(i => names[i]).ToArray());
        plot.Title(title);
        plot.XLabel(xLabel);
        byte[] png = plot.GetImage(Width, Height).GetImageBytes(ImageFormat.Png);
        AtomicFile.Write(path, stream => stream.Write(png));
    }

    private static void Save(string path, string title, string xLabel, string yLabel, Alignment legend, bool integerX,
        params (string Name, double[] X, double[] Y)[] series)
    {
        var plot = new Plot();
        foreach (var (name, x, y) in series)
        {
            var line = plot.Add.Scatter(x, y);
            line.LegendText = name;
            line.LineWidth = 2;
            line.MarkerSize = x.Length is > 2 and <= 60 ? 5 : 0;
            if (name == "chance")
                line.LinePattern = LinePattern.Dashed;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(legend);
        if (integerX)
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        byte[] png = plot.GetImage(Width, Height).GetImageBytes(ImageFormat.Png);
        AtomicFile.Write(path, stream => stream.Write(png));
    }
}

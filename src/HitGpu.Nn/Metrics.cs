// Classification metrics from probabilities and 0/1 labels, in double, threshold 0.5 (a hit when p > 0.5).
namespace HitGpu.Nn;

public sealed record ConfusionMatrix(int TruePositives, int FalsePositives, int TrueNegatives, int FalseNegatives);

public sealed record RocPoint(double FalsePositiveRate, double TruePositiveRate);

public sealed record Evaluation(
    int Count, double Accuracy, double Precision, double Recall, double F1, double RocAuc, double LogLoss,
    ConfusionMatrix Confusion, IReadOnlyList<RocPoint> Roc)
{
    public static Evaluation Of(IReadOnlyList<float> probabilities, IReadOnlyList<float> labels)
    {
        if (probabilities.Count != labels.Count || labels.Count == 0)
            throw new ArgumentException($"need one probability per label and at least one of each; got {probabilities.Count} and {labels.Count}");
        int tp = 0, fp = 0, tn = 0, fn = 0;
        double logLoss = 0;
        for (int i = 0; i < labels.Count; i++)
        {
            bool hit = probabilities[i] > 0.5f, actual = labels[i] > 0.5f;
            if (hit && actual) tp++;
            else if (hit) fp++;
            else if (actual) fn++;
            else tn++;
            // Clipped as scikit-learn does, so a confident mistake costs a large but finite loss.
            double p = Math.Clamp(probabilities[i], 1e-7, 1 - 1e-7);
            logLoss -= actual ? Math.Log(p) : Math.Log(1 - p);
        }
        double precision = tp + fp > 0 ? (double)tp / (tp + fp) : 0;
        double recall = tp + fn > 0 ? (double)tp / (tp + fn) : 0;
        double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
        var (roc, auc) = RocCurve(probabilities, labels);
        return new Evaluation(labels.Count, (double)(tp + tn) / labels.Count, precision, recall, f1, auc, logLoss / labels.Count,
            new ConfusionMatrix(tp, fp, tn, fn), roc);
    }

    /// <summary>
    /// The ROC curve (one point per distinct threshold, from (0,0) to (1,1)) and the area under it by the
    /// trapezoid rule, which equals the probability that a random hit scores above a random non-hit (ties half).
    /// NaN when only one class is present.
    /// </summary>
    public static (IReadOnlyList<RocPoint> Points, double Auc) RocCurve(IReadOnlyList<float> probabilities, IReadOnlyList<float> labels)
    {
        int positives = labels.Count(l => l > 0.5f), negatives = labels.Count - positives;
        if (positives == 0 || negatives == 0)
            return ([], double.NaN);
        var order = Enumerable.Range(0, labels.Count).OrderByDescending(i => probabilities[i]).ToArray();
        var points = new List<RocPoint> { new(0, 0) };
        int tp = 0, fp = 0;
        double auc = 0, lastFpr = 0, lastTpr = 0;
        for (int k = 0; k < order.Length; k++)
        {
            if (labels[order[k]] > 0.5f) tp++; else fp++;
            if (k + 1 < order.Length && probabilities[order[k + 1]] == probabilities[order[k]])
                continue; // tied scores move together
            double fpr = (double)fp / negatives, tpr = (double)tp / positives;
            auc += (fpr - lastFpr) * (tpr + lastTpr) / 2;
            points.Add(new RocPoint(fpr, tpr));
            (lastFpr, lastTpr) = (fpr, tpr);
        }
        return (points, auc);
    }
}

//! Ten-crop validation (SPEC §5.5): the pipeline's result for an image is the mean of the
//! softmaxes of its ten crops (four corners + center and their mirrors), each crop run on
//! its own. The full 200-sample ten-crop numbers are measured with the release binary (README).

use std::path::PathBuf;

use resnet::validate::{self, Dataset, Item, Layout, PipelineOptions};
use resnet::{Classifier, Model};
use resnet_test_support::shared_asset;

#[test]
fn ten_crop_ranks_by_the_mean_softmax_of_the_ten_crops() {
    let (Some(model), Some(images)) =
        (shared_asset("models/resnet50-v1-keras/model.onnx"), shared_asset("data/imagenet-samples/images"))
    else {
        return;
    };
    let classifier = Classifier::new(Model::load(model).unwrap().with_threads(2)).unwrap();
    let files = [("n01440764_tench.JPEG", 0), ("n01530575_brambling.JPEG", 10)];
    let items: Vec<Item> =
        files.iter().map(|(f, label)| Item { path: images.join(f), file: f.to_string(), label: *label }).collect();
    let dataset = Dataset { root: PathBuf::from(&images), layout: Layout::ClassFolders, items, unlabeled: vec![] };
    let opts = PipelineOptions { crops: 10, batch: 16, workers: 2, ..PipelineOptions::default() };
    let out = validate::run(&classifier, &dataset, &opts, &mut |_| {}).unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.images.len(), 2);

    for (result, (file, _)) in out.images.iter().zip(files) {
        let img = resnet::vision::decode_file(images.join(file), &Default::default()).unwrap();
        let crops = classifier.preprocess().ten_crop_rgb8(&img).unwrap();
        assert_eq!(crops.len(), 10);
        let mut mean = vec![0f64; 1000];
        for crop in &crops {
            // One crop per model run: the batch of ten must not change the answer.
            let p = classifier.classify_prepared(vec![classifier.preprocess().tensor_chw(crop)]).unwrap();
            for (m, &x) in mean.iter_mut().zip(&p[0].probabilities) {
                *m += f64::from(x) / 10.0;
            }
        }
        let mean: Vec<f32> = mean.into_iter().map(|x| x as f32).collect();
        let expected_top5 = resnet::postprocess::top_k(&mean, 5);
        assert_eq!(result.top5, expected_top5, "{file}");
        for (&c, &p) in result.top5.iter().zip(&result.probabilities) {
            assert!((mean[c] - p).abs() < 1e-4, "{file}: class {c}: {p} vs {}", mean[c]);
        }
        let total: f32 = mean.iter().sum();
        assert!((total - 1.0).abs() < 1e-3, "{file}: mean softmax sums to {total}");
        // The center crop (crop 8) is the single-crop input.
        assert_eq!(crops[8], classifier.preprocess().crop_rgb8(&img).unwrap());
    }
}

"""The README's API example says what its photo truly is and what the shipped weights answer for it, so that a
miss, a false alarm or a refusal shows as one. The sentence is written from the weights: when they change, this
test fails and prints the sentence to paste."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from model.texts import words

ROOT = Path(__file__).resolve().parent.parent
FILE = "examples/benign_ISIC_0032452.jpg"
CALL = {"age": 55, "sex": "male", "site": "back"}  # the README's /assess call


def sentence(pred, truth: pd.Series) -> str:
    """What the README says under its API example, for this answer to this photo."""
    cancer, flagged = truth["label4"] in ("melanoma", "other_cancer"), pred.risk in ("moderate", "high")
    if not pred.in_scope:
        answer, judgement = f"risk `out_of_scope` (refused: `{pred.refusal_reason}`)", "no risk level at all"
    else:
        top = words(f"class.{pred.label}").lower()
        answer = f"risk `{pred.risk}`, its top class {top} at {100 * pred.probabilities[pred.label]:.0f} %"
        judgement = ("flagged, as it should be" if flagged else "a miss") if cancer else (
            "a false alarm" if flagged else "right")
    return (f"`{FILE}` is a {words(f'diagnosis.{truth.diagnosis}').lower()}: its true diagnosis "
            f"(`examples/examples.csv`). With the shipped weights the `/assess` call above answers {answer}: "
            f"{judgement}.")


def test_the_readme_api_example_states_its_true_diagnosis_and_the_answer_it_gets(shipped):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f'handle_file("{FILE}"), age=55, sex="male", site="back"' in readme, "the README's call changed"
    examples = pd.read_csv(ROOT / "examples" / "examples.csv", dtype=str, keep_default_na=False)
    truth = examples.set_index("file").loc[Path(FILE).name]
    expected = sentence(shipped.predict(ROOT / FILE, **CALL), truth)
    assert " ".join(expected.split()) in " ".join(readme.split()), (
        f"README.md, under the API example: the shipped weights now answer otherwise. Write there:\n{expected}")

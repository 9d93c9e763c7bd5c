"""Define the shop project (graphpack.yaml) and train its model: `python project.py`."""
import os

import graphpack
from serving import train

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "models/iris.pkl"  # relative to the project directory, where functions run

project = graphpack.get_or_create_project("shop", HERE)
fn = project.set_function("serving.py", name="recommender", kind="serving", requirements=["scikit-learn"])
graph = fn.set_topology("flow", engine="sync", exist_ok=True)
graph.to(class_name="Enrich", name="enrich") \
     .to("*", name="router").respond() \
     .to(">>", "audit-queue", path=".graphpack/queues/audit") \
     .to(class_name="Audit", name="audit", function="auditor")
fn.add_model("iris", class_name="ClassifierModel", model_path=MODEL)
fn.add_child_function("auditor", "serving.py")

if __name__ == "__main__":
    train(os.path.join(HERE, MODEL))
    project.save()
    print(f"saved {project.spec_path} and trained {MODEL}")

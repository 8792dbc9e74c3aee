//! Prints the SealedSecret CRD YAML that `crds/sealedsecrets.bitnami.com.yaml` must hold.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", sealant_crds::crd::crd_yaml()?);
    Ok(())
}

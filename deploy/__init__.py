"""Tools that read or check the deployment files (docker-compose.yml, Dockerfile, deploy/*); not part of the product."""

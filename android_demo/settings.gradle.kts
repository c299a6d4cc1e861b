// keras-mixer Android demo: one app module. Google's Maven repository hosts the
// Android Gradle plugin, AndroidX and LiteRT; Maven Central hosts Kotlin and JUnit.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "keras-mixer-demo"
include(":app")
